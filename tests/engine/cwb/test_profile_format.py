"""Profile file: round trip, scaling, and a precise error for each kind of bad file."""

import json

import pytest

from engine.cwb.profile_format import LayerProfile, Profile, load_profile, save_profile
from engine.errors import ProfileError
from tests.engine.cwb.synthetic import paper_like_profile


def _write(tmp_path, data, name="bad.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def _document():
    return paper_like_profile().to_dict()


def test_round_trip_keeps_every_field(tmp_path):
    profile = paper_like_profile()
    path = save_profile(profile, tmp_path / "sub" / "profile.json")
    loaded = load_profile(path)
    assert loaded == profile
    data = json.loads(path.read_text())
    assert data["format"] == "litesrl-profile" and data["version"] == 1
    assert data["settings"]["batch_size"] == 64 and data["settings"]["optimizer"] == "sgd"
    assert set(data["layers"][0]) >= {"name", "forward_ms", "backward_ms", "param_bytes", "grad_bytes",
                                      "optimizer_bytes", "activation_bytes", "output_bytes"}
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # no temporary file left behind


def test_optional_shape_and_kind_round_trip(tmp_path):
    layer = LayerProfile("stem", 1.0, 2.0, 4, 4, 4, 8, 16, kind="conv", shape=[64, 8, 4, 4])
    profile = Profile(settings=paper_like_profile().settings, layers=(layer,))
    assert load_profile(save_profile(profile, tmp_path / "p.json")).layers[0].shape == (64, 8, 4, 4)


def test_scaled_multiplies_times_only():
    profile = paper_like_profile()
    slow = profile.scaled(2.0, device="Jetson Nano")
    assert slow.total_compute_ms == pytest.approx(2 * profile.total_compute_ms)
    assert slow.total_state_bytes == profile.total_state_bytes
    assert slow.settings.device == "Jetson Nano" and profile.settings.device != "Jetson Nano"
    with pytest.raises(ProfileError, match="time factor"):
        profile.scaled(0)


def _without(key, index=0):
    data = _document()
    del data["layers"][index][key]
    return data


def _with(key, value, index=0):
    data = _document()
    data["layers"][index][key] = value
    return data


def _top(key, value):
    data = _document()
    data[key] = value
    return data


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("{not json", "not JSON"),
        ([1, 2], "top level must be a JSON object"),
        (_top("format", "something-else"), "'format' must be 'litesrl-profile'"),
        (_top("version", 2), "unknown version 2"),
        (_top("layers", []), "'layers' is empty"),
        (_top("layers", None), "missing 'layers'"),
        (_without("backward_ms", 3), r"layers\[3\] \(maxpool\): missing field 'backward_ms'"),
        (_with("forward_ms", "fast"), r"'forward_ms' must be a number, got 'fast'"),
        (_with("param_bytes", 1.5), r"'param_bytes' must be an integer"),
        (_with("output_bytes", -4), r"'output_bytes' must be a finite number >= 0, got -4"),
        (_with("colour", "red"), "unknown field 'colour'"),
        (_with("name", "bn1", 0), "layer name 'bn1' appears twice"),
        (_with("shape", [1, -2]), "'shape' must be a list of non-negative integers"),
    ],
)
def test_bad_files_name_the_file_and_the_problem(tmp_path, data, fragment):
    path = _write(tmp_path, data)
    with pytest.raises(ProfileError, match=fragment) as caught:
        load_profile(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)


def test_bad_settings(tmp_path):
    data = _document()
    data["settings"]["batch_size"] = 0
    with pytest.raises(ProfileError, match="'batch_size' must be a positive integer"):
        load_profile(_write(tmp_path, data))
    del data["settings"]["host"]
    with pytest.raises(ProfileError, match="settings: missing field 'host'"):
        load_profile(_write(tmp_path, data))


def test_missing_file(tmp_path):
    with pytest.raises(ProfileError, match="profile not found"):
        load_profile(tmp_path / "nope.json")


def test_data_ms_and_paper_bytes_round_trip_and_old_files_load(tmp_path):
    layer = LayerProfile("stem", 1.0, 2.0, 4, 4, 4, 8, 16, paper_bytes=99)
    profile = Profile(settings=paper_like_profile().settings, layers=(layer,), data_ms=12.5)
    loaded = load_profile(save_profile(profile, tmp_path / "p.json"))
    assert loaded.data_ms == 12.5 and loaded.layers[0].paper_bytes == 99 and loaded.total_paper_bytes == 99
    old = _document()  # written before both fields: no data_ms, no paper_bytes
    old.pop("data_ms")
    loaded = load_profile(_write(tmp_path, old))
    assert loaded.data_ms == 0.0 and not loaded.has_paper_bytes and loaded.total_paper_bytes is None
    assert loaded.scaled(2.0).data_ms == 0.0


@pytest.mark.parametrize("value", [-1.0, "fast", float("inf")])
def test_bad_data_ms_is_refused(tmp_path, value):
    document = _document()
    document["data_ms"] = value
    with pytest.raises(ProfileError, match="data_ms"):
        load_profile(_write(tmp_path, json.dumps(document, allow_nan=True)))
