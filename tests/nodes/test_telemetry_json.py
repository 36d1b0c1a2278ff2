"""The JSON form of a Sample: lossless round trip through real JSON text, documented shape, precise errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from nodes.errors import TelemetryError
from nodes.telemetry.json_form import sample_from_json, sample_to_json
from nodes.telemetry.sample import Clocked, CpuCore, Memory, Rail, Sample, Swap, Temperature
from nodes.telemetry.tegrastats import parse_tegrastats_line
from tests.nodes.test_tegrastats import EXPECTED_LINES, data_lines


def through_json(sample: Sample) -> Sample:
    return sample_from_json(json.loads(json.dumps(sample_to_json(sample))))


@pytest.mark.parametrize("name", sorted(EXPECTED_LINES))
def test_every_capture_round_trips(tegrastats_dir, name):
    for line in data_lines(tegrastats_dir / name):
        sample = parse_tegrastats_line(line)
        assert through_json(sample) == sample, line


def test_round_trip_keeps_aware_time_unknown_tokens_and_extras():
    sample = Sample(
        source="psutil",
        time=datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=timezone(timedelta(hours=2))),
        ram=Memory(used_mb=100, total_mb=1000),
        swap=Swap(used_mb=0, total_mb=0),
        cpus=(CpuCore(True, 12.5, 1800), CpuCore(False)),
        gpu=Clocked(load_pct=None, freq_mhz=305, gpc_freq_mhz=(305, 0)),
        engines={"APE": Clocked(freq_mhz=174)},
        temperatures={"coretemp/Package id 0": Temperature(51.0), "tj": Temperature(None, (None, 40.5))},
        rails={"VDD_IN": Rail(5000, None, (6000,))},
        unknown=("EDP", "limit", "1734"),
    )
    again = through_json(sample)
    assert again == sample
    assert again.time.utcoffset() == timedelta(hours=2)


def test_documented_shape_and_derived_figures(tegrastats_dir):
    sample = parse_tegrastats_line(data_lines(tegrastats_dir / "nano.txt")[5])
    data = sample_to_json(sample)
    assert data["version"] == 1
    assert data["source"] == "tegrastats"
    assert data["time"] is None
    assert data["ram"] == {"used_mb": 1762, "total_mb": 3964, "lfb_blocks": 252, "lfb_block_kb": 4096}
    assert data["iram"] == {"used_kb": 0, "total_kb": 252, "lfb_kb": 252}
    assert data["cpus"][0] == {"online": True, "load_pct": 17.0, "freq_mhz": 204}
    assert data["gpu"] == {"online": True, "load_pct": 99.0, "freq_mhz": 921, "gpc_freq_mhz": []}
    assert data["rails"]["POM_5V_IN"] == {"current_mw": 5143, "average_mw": 2615, "extra_mw": []}
    assert data["temperatures"]["CPU"] == {"celsius": 28.5, "extra_c": []}
    assert data["derived"] == {
        "cpu_pct": pytest.approx(5.75),
        "gpu_pct": 99.0,
        "ram_pct": pytest.approx(100 * 1762 / 3964),
        "max_temp_c": 30.0,
        "power_mw": 5143,
        "power_from": "POM_5V_IN",
    }


def test_reader_ignores_unknown_keys_and_recomputes_derived():
    data = sample_to_json(Sample(source="psutil", cpus=(CpuCore(True, 50.0),)))
    data["derived"]["cpu_pct"] = 99.0
    data["added_in_a_later_version"] = {"x": 1}
    sample = sample_from_json(data)
    assert sample.cpu_percent == 50.0


def _valid() -> dict:
    return sample_to_json(Sample(source="tegrastats", ram=Memory(1, 2), cpus=(CpuCore(True, 1.0, 2),)))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version=2), "unsupported telemetry JSON version 2"),
        (lambda d: d.pop("version"), "unsupported telemetry JSON version None"),
        (lambda d: d.update(source="nvml"), "sample.source: expected one of"),
        (lambda d: d["ram"].pop("total_mb"), "sample.ram: missing key 'total_mb'"),
        (lambda d: d["ram"].update(used_mb=True), "sample.ram.used_mb: expected int, got bool"),
        (lambda d: d["ram"].update(used_mb=1.5), "sample.ram.used_mb: expected int, got float"),
        (lambda d: d["cpus"][0].update(load_pct="12"), "sample.cpus[0].load_pct: expected float, got str"),
        (lambda d: d.update(cpus={}), "sample.cpus: expected a list, got dict"),
        (lambda d: d.update(rails=[]), "sample.rails: expected an object, got list"),
        (lambda d: d.update(time="yesterday"), "sample.time: 'yesterday' is not an ISO 8601 time"),
        (lambda d: d.update(rails={"VDD_IN": {"current_mw": None}}), "sample.rails.VDD_IN.current_mw: expected int, got null"),
    ],
)
def test_bad_json_raises_telemetry_error_naming_the_field(mutate, message):
    data = _valid()
    mutate(data)
    with pytest.raises(TelemetryError) as caught:
        sample_from_json(data)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_non_object_is_rejected():
    with pytest.raises(TelemetryError, match="must be an object, got list"):
        sample_from_json([1, 2])
