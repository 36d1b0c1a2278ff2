"""Telemetry sources on real processes: psutil on this machine, tegrastats via a real child script, jtop's mapping."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import psutil
import pytest

from nodes.errors import TelemetryError
from nodes.telemetry.choose import open_best_source
from nodes.telemetry.jtop_source import JtopSource, sample_from_jtop
from nodes.telemetry.psutil_source import PsutilSource
from nodes.telemetry.sample import Clocked, CpuCore, Iram, Memory, Rail, Swap, Temperature
from nodes.telemetry.tegrastats import parse_tegrastats_line
from nodes.telemetry.tegrastats_source import TegrastatsSource

# Two real lines (Nano without a date prefix, Xavier NX with one), copied from the shared captures.
NANO = (
    "RAM 936/3964MB (lfb 366x4MB) SWAP 0/4096MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [10%@102,3%@102,0%@102,0%@102] EMC_FREQ 0%@204 GR3D_FREQ 0%@76 APE 25 PLL@24C CPU@27.5C "
    "PMIC@50C GPU@28C AO@29.5C thermal@28C POM_5V_IN 920/920 POM_5V_GPU 0/0 POM_5V_CPU 119/119"
)
XAVIER_NX = (
    "10-01-2025 20:05:55 RAM 2274/6834MB (lfb 27x4MB) SWAP 542/3417MB (cached 2MB) "
    "CPU [99%@1189,100%@1188,100%@1189,98%@1189,off,off] EMC_FREQ 0% GR3D_FREQ 22% AUX@36.5C CPU@40C "
    "thermal@37.85C AO@37.5C GPU@38C PMIC@50C VDD_IN 5542mW/5542mW VDD_CPU_GPU_CV 1594mW/1594mW VDD_SOC 1234mW/1234mW"
)
JTOP_SOCKET = Path("/run/jtop.sock")


def write_fake_tegrastats(
    folder: Path, lines: list[str], *, then: str = "sleep", exit_code: int = 0, stderr: str = "", grandchild: bool = False
) -> Path:
    """An executable that behaves like tegrastats: honours --interval (ms), prints ``lines``, then sleeps or exits.

    It records its arguments in ``args.txt`` and, with ``grandchild``, the pid of a `sleep` it spawns
    in ``grandchild.pid`` (to check that closing stops the whole process group).
    """
    script = folder / "fake-tegrastats"
    script.write_text(
        f"""#!{sys.executable}
import subprocess, sys, time
args = sys.argv[1:]
open({str(folder / 'args.txt')!r}, "w").write(" ".join(args))
if {grandchild!r}:
    child = subprocess.Popen(["sleep", "60"])
    open({str(folder / 'grandchild.pid')!r}, "w").write(str(child.pid))
if {stderr!r}:
    sys.stderr.write({stderr!r} + "\\n")
    sys.stderr.flush()
pause = int(args[args.index("--interval") + 1]) / 1000
for line in {lines!r}:
    print(line, flush=True)
    time.sleep(pause)
if {then!r} == "sleep":
    time.sleep(60)
sys.exit({exit_code})
"""
    )
    script.chmod(0o755)
    return script


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")  # a killed grandchild may linger as a zombie until init reaps it


# ---------------------------------------------------------------- psutil


async def test_psutil_source_reads_this_machine():
    source = await PsutilSource.open(0.05)
    started = time.monotonic()
    samples = []
    async with source:
        async for sample in source.samples():
            samples.append(sample)
            if len(samples) == 3:
                break
    elapsed = time.monotonic() - started
    assert elapsed >= 3 * 0.05 * 0.9  # paced by the interval, not a busy loop
    total_mb = psutil.virtual_memory().total // (1024 * 1024)
    for sample in samples:
        assert sample.source == "psutil"
        assert sample.time.tzinfo is not None
        assert len(sample.cpus) == psutil.cpu_count()
        assert all(core.online and 0.0 <= core.load_pct <= 100.0 for core in sample.cpus)
        assert sample.ram.total_mb == total_mb and 0 < sample.ram.used_mb < total_mb
        assert sample.gpu is None and sample.rails == {} and sample.unknown == ()
        assert 0.0 <= sample.cpu_percent <= 100.0
    assert samples[0].time < samples[1].time < samples[2].time


async def test_psutil_source_stops_when_closed():
    source = await PsutilSource.open(0.02)
    received = 0
    async for _ in source.samples():
        received += 1
        await source.close()
    assert received == 1


# ---------------------------------------------------------------- tegrastats child process


async def test_tegrastats_source_parses_a_real_child_process(tmp_path):
    script = write_fake_tegrastats(tmp_path, [NANO, XAVIER_NX, NANO])
    source = await TegrastatsSource.open(0.05, command=[str(script)])
    samples = []
    async with source:
        async for sample in source.samples():
            samples.append(sample)
            if len(samples) == 3:
                break
        pid = source.pid
    assert (tmp_path / "args.txt").read_text() == "--interval 50"
    assert _gone(pid)
    # Same values as parsing the lines directly; undated lines get the arrival time.
    assert samples[1] == parse_tegrastats_line(XAVIER_NX)
    assert samples[0].time is not None and samples[0].time.tzinfo is not None
    assert samples[0].ram == Memory(936, 3964, 366, 4096)
    assert samples[2].rails["POM_5V_IN"] == Rail(920, 920)


async def test_closing_stops_the_whole_process_group(tmp_path):
    script = write_fake_tegrastats(tmp_path, [NANO], grandchild=True)
    source = await TegrastatsSource.open(0.05, command=[str(script)])
    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert not _gone(grandchild)
    await source.close()
    deadline = time.monotonic() + 3
    while not _gone(grandchild) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _gone(grandchild)
    await source.close()  # closing twice is harmless


async def test_tegrastats_that_exits_later_raises(tmp_path):
    script = write_fake_tegrastats(tmp_path, [NANO, NANO], then="exit", exit_code=4, stderr="lost the INA3221")
    source = await TegrastatsSource.open(0.02, command=[str(script)])
    received = 0
    with pytest.raises(TelemetryError, match="exited with code 4: lost the INA3221"):
        async for _ in source.samples():
            received += 1
    assert received == 2
    await source.close()


async def test_tegrastats_that_fails_at_start_reports_why(tmp_path):
    script = write_fake_tegrastats(tmp_path, [], then="exit", exit_code=3, stderr="tegrastats: permission denied")
    with pytest.raises(TelemetryError, match="exited with code 3: tegrastats: permission denied"):
        await TegrastatsSource.open(0.05, command=[str(script)])


async def test_tegrastats_that_prints_something_else_is_refused(tmp_path):
    script = write_fake_tegrastats(tmp_path, ["Usage: tegrastats [-option]"])
    with pytest.raises(TelemetryError, match="does not print tegrastats lines"):
        await TegrastatsSource.open(0.05, command=[str(script)])


async def test_silent_tegrastats_times_out(tmp_path):
    script = write_fake_tegrastats(tmp_path, [])
    started = time.monotonic()
    with pytest.raises(TelemetryError, match="printed nothing within 0.5 s"):
        await TegrastatsSource.open(0.05, command=[str(script)], start_timeout=0.5)
    assert time.monotonic() - started < 5


async def test_missing_and_non_executable_commands(tmp_path):
    with pytest.raises(TelemetryError, match="not found"):
        await TegrastatsSource.open(1.0, command=[str(tmp_path / "no-such-tegrastats")])
    plain = tmp_path / "plain"
    plain.write_text("not a program")
    with pytest.raises(TelemetryError, match="is not executable"):
        await TegrastatsSource.open(1.0, command=[str(plain)])


async def test_bad_interval_is_refused():
    with pytest.raises(TelemetryError, match="between 0.01 and 3600 seconds, got 0"):
        await PsutilSource.open(0)


# ---------------------------------------------------------------- choosing a source


async def test_best_source_prefers_tegrastats_over_psutil(tmp_path):
    script = write_fake_tegrastats(tmp_path, [NANO] * 5)
    choice = await open_best_source(0.05, tegrastats_command=[str(script)], use_jtop=False)
    async with choice.source:
        assert choice.source.name == "tegrastats"
        assert choice.skipped == ()
        assert choice.describe() == "tegrastats"


async def test_best_source_falls_back_to_psutil_and_says_why(tmp_path):
    missing = str(tmp_path / "tegrastats")
    choice = await open_best_source(0.05, tegrastats_command=[missing], use_jtop=False)
    async with choice.source:
        assert choice.source.name == "psutil"
        assert choice.skipped == (("tegrastats", f"{missing} not found"),)
        assert choice.describe() == f"psutil (tegrastats: {missing} not found)"


@pytest.mark.skipif(JTOP_SOCKET.exists(), reason="a jtop service runs on this machine")
async def test_jtop_without_its_service_is_skipped_with_the_reason(tmp_path):
    with pytest.raises(TelemetryError, match="jtop service unavailable: The jtop.service is not active"):
        await JtopSource.open(0.5)
    choice = await open_best_source(0.05, tegrastats_command=[str(tmp_path / "none")])
    async with choice.source:
        assert [name for name, _ in choice.skipped] == ["jtop", "tegrastats"]
        assert choice.source.name == "psutil"


# ---------------------------------------------------------------- jtop mapping

# Shaped like jetson-stats 4.x+ properties on a Xavier NX (units per the jtop reference: kB, kHz, mW).
JTOP_XAVIER_NX = {
    "cpu": {
        "total": {"user": 20.1, "nice": 0.0, "system": 3.2, "idle": 76.7},
        "cpu": [
            {
                "online": True,
                "governor": "schedutil",
                "freq": {"min": 115200, "max": 1907200, "cur": 1190400},
                "info_freq": {"min": 115200, "max": 1907200, "cur": 1190400},
                "idle_state": {"C1": 1, "c6": 1},
                "user": 40.0,
                "nice": 0.0,
                "system": 10.0,
                "idle": 50.0,
                "model": "ARMv8 Processor rev 0 (v8l)",
            },
            {
                "online": True,
                "governor": "schedutil",
                "freq": {"min": 115200, "max": 1907200, "cur": 729600},
                "info_freq": {"min": 115200, "max": 1907200, "cur": 729600},
                "idle_state": {"C1": 1, "c6": 1},
                "user": 5.0,
                "nice": 0.0,
                "system": 5.0,
                "idle": 90.0,
                "model": "ARMv8 Processor rev 0 (v8l)",
            },
            {
                "online": False,
                "governor": "schedutil",
                "freq": {"min": 115200, "max": 1907200, "cur": 1190400},
                "info_freq": {"min": 115200, "max": 1907200, "cur": 1190400},
                "idle_state": {},
                "model": "",
            },
        ],
    },
    "memory": {
        "RAM": {"tot": 7999172, "used": 2328576, "free": 3711384, "buffers": 95184, "cached": 1876532, "shared": 123904,
                "lfb": 27},
        "SWAP": {"tot": 3999580, "used": 555008, "cached": 2048, "table": {}},
        "EMC": {"online": True, "val": 7, "cur": 1600000, "max": 1600000, "min": 204000},
    },
    "gpu": {
        "gv11b": {
            "type": "integrated",
            "status": {"railgate": False, "tpc_pg_mask": False, "3d_scaling": True, "load": 22.5},
            "freq": {"governor": "nvhost_podgov", "min": 114750, "max": 1100000, "cur": 510000, "GPC": [510000]},
            "power_control": "auto",
        }
    },
    "engine": {
        "APE": {"APE": {"online": True, "cur": 150000}},
        "NVENC": {"NVENC": {"online": False, "cur": 0, "max": 1075200, "min": 0}},
        "DLA0": {"DLA0_CORE": {"online": True, "cur": 1100800, "max": 1395200, "min": 0}},
    },
    "temperature": {
        "AO": {"online": True, "temp": 37.5, "max": 102.0, "crit": 105.0},
        "CPU": {"online": True, "temp": 40.0, "max": 102.0, "crit": 105.0},
        "PMIC": {"online": True, "temp": 50.0},
        "iwlwifi": {"online": False, "temp": -256},
    },
    "power": {
        "rail": {
            "VDD_CPU_GPU_CV": {"online": True, "type": "INA3221", "status": "ok", "volt": 5000, "curr": 318, "power": 1594,
                               "avg": 1600},
            "VDD_SOC": {"online": True, "type": "INA3221", "status": "ok", "volt": 5000, "curr": 246, "power": 1234, "avg": 1230},
            "VDD_X": {"online": False, "type": "INA3221", "power": 0, "avg": 0},
        },
        # jtop moved its input rail out of "rail" and named it here.
        "tot": {"online": True, "type": "INA3221", "status": "ok", "volt": 5016, "curr": 1104, "power": 5542, "avg": 5500,
                "name": "VDD_IN"},
    },
}


def test_jtop_mapping_of_a_xavier_nx_snapshot():
    s = sample_from_jtop(JTOP_XAVIER_NX)
    assert s.source == "jtop"
    assert s.ram == Memory(used_mb=2328576 // 1024, total_mb=7999172 // 1024, lfb_blocks=27, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=542, total_mb=3905, cached_mb=2)
    assert s.iram is None
    assert s.cpus == (CpuCore(True, 50.0, 1190), CpuCore(True, 10.0, 729), CpuCore(False))
    assert s.cpu_percent == 30.0
    assert s.emc == Clocked(load_pct=7.0, freq_mhz=1600)
    assert s.gpu == Clocked(load_pct=22.5, freq_mhz=510, gpc_freq_mhz=(510,))
    assert s.engines == {
        "APE": Clocked(freq_mhz=150),
        "NVENC": Clocked(online=False),
        "DLA0_CORE": Clocked(freq_mhz=1100),
    }
    assert s.temperatures["CPU"] == Temperature(40.0)
    assert s.temperatures["iwlwifi"] == Temperature(None)
    assert s.max_temp_c == 40.0
    assert s.rails == {"VDD_CPU_GPU_CV": Rail(1594, 1600), "VDD_SOC": Rail(1234, 1230), "VDD_IN": Rail(5542, 5500)}
    assert (s.power_from, s.total_power_mw) == ("VDD_IN", 5542)


def test_jtop_mapping_without_an_input_rail_sums_like_jtop():
    snapshot = {
        "cpu": {"cpu": []},
        "memory": {"RAM": {"tot": 4096000, "used": 1024000, "lfb": 3}, "IRAM": {"tot": 252, "used": 12, "lfb": 240}},
        "gpu": {},
        "engine": {},
        "temperature": {},
        "power": {
            "rail": {"VDD_GPU_SOC": {"power": 2798, "avg": 2798}, "VDD_CPU_CV": {"power": 799, "avg": 799}},
            "tot": {"power": 3597, "avg": 3597},
        },
    }
    s = sample_from_jtop(snapshot)
    assert s.iram == Iram(used_kb=12, total_kb=252, lfb_kb=240)
    assert s.swap is None and s.emc is None and s.gpu is None and s.cpus == ()
    assert (s.power_from, s.total_power_mw) == ("sum", 3597)


def test_jtop_mapping_of_an_empty_snapshot():
    s = sample_from_jtop({})
    assert s.ram is None and s.rails == {} and s.cpu_percent is None and s.total_power_mw is None
