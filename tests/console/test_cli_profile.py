"""`litesrl profile`: the real entry point measures a tiny model, writes the file, shows it; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cwb.profile_format import load_profile
from tests.engine.cwb.synthetic import paper_like_profile

REPO = Path(__file__).resolve().parents[2]
TINY = ("--batch-size", "2", "--image-size", "32", "--repeats", "1", "--warmup", "0", "--threads", "1", "--device", "cpu")


def litesrl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "console.cli.main", "profile", *args],
        cwd=REPO, capture_output=True, text=True, timeout=180, env=env,
    )


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    path = tmp_path_factory.mktemp("profile") / "sub" / "profile.json"
    return path, litesrl(*TINY, "--out", str(path))


def test_measures_writes_and_prints_the_table(measured):
    path, done = measured
    assert done.returncode == 0, done.stderr
    profile = load_profile(path)
    assert profile.names[0] == "conv1" and profile.names[-1] == "head"
    assert profile.settings.batch_size == 2 and profile.settings.image_size == 32
    assert [p.name for p in path.parent.iterdir()] == ["profile.json"]  # atomic write: no temporary file left
    out = done.stdout
    for text in ("lite-srl/resnet18 · batch 2 · 32 px", "layer4_1", "head", "fwd ms", "saved", "total", "Memory",
                 f"wrote {path}"):
        assert text in out, text
    assert "params" in out and "grads" in out and "optimizer" in out and "activations" in out


def test_show_prints_an_existing_profile(measured):
    path, _ = measured
    done = litesrl("--show", str(path))
    assert done.returncode == 0, done.stderr
    assert "layer4_1" in done.stdout and "Memory" in done.stdout and "wrote" not in done.stdout


def test_show_json_totals_match_the_layers(tmp_path):
    path = tmp_path / "paper.json"
    path.write_text(json.dumps(paper_like_profile().to_dict()))
    done = litesrl("--show", str(path), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    layers = data["profile"]["layers"]
    assert data["totals"]["compute_ms"] == pytest.approx(sum(layer["forward_ms"] + layer["backward_ms"] for layer in layers))
    assert data["totals"]["activation_bytes"] == sum(layer["activation_bytes"] for layer in layers)
    assert data["totals"]["state_bytes"] == paper_like_profile().total_state_bytes


def test_json_after_measuring(tmp_path):
    done = litesrl(*TINY, "--optimizer", "adam", "--modality", "sar", "--clock", "process", "--out", str(tmp_path / "p.json"),
                   "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    settings = data["profile"]["settings"]
    assert settings["optimizer"] == "adam" and settings["channels"] == 1 and "process clock" in settings["device"]
    assert data["totals"]["optimizer_bytes"] >= 2 * data["totals"]["grad_bytes"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{}", "'format' must be 'litesrl-profile', got None"),
        ("not json", "not JSON"),
        (None, "profile not found"),
    ],
)
def test_show_bad_file_is_one_error_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    done = litesrl("--show", str(path))
    assert done.returncode != 0
    assert done.stderr.startswith(f"error: {path}: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "error: give --out PATH"),
        (("--show", "a.json", "--out", "b.json"), "error: give --show PATH to print a profile or --out PATH"),
        (("--image-size", "8", "--out", "x.json"), "error: image size must be an integer of at least 32 px, got 8"),
        (("--device", "tpu", "--out", "x.json"), "error: unknown device 'tpu'"),
    ],
)
def test_bad_options_are_one_error_line(tmp_path, args, message):
    done = litesrl(*args)
    assert done.returncode != 0
    assert done.stderr.startswith(message), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.json").exists()


def test_the_command_module_does_not_import_torch():
    code = "import sys, console.cli.profile; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
