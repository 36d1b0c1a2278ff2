"""The tegrastats parser on every real capture in ../shared/tegrastats, hand-checked values, and odd input."""

from __future__ import annotations

import random
import re
import string
from datetime import datetime
from pathlib import Path

import pytest

from nodes.telemetry.sample import Clocked, CpuCore, Iram, Memory, Rail, Swap, Temperature
from nodes.telemetry.tegrastats import parse_tegrastats_line

# Data lines (not comments, not blank) per capture file, so that a silently skipped line fails.
EXPECTED_LINES = {
    "agx-orin.txt": 10,
    "agx-xavier.txt": 3,
    "nano.txt": 10,
    "orin-nano-nx.txt": 7,
    "tx1.txt": 2,
    "tx2.txt": 8,
    "xavier-nx.txt": 10,
}

TEMP_TOKEN = re.compile(r"\w+@-?[\d.]+C(/-?[\d.]+C)*")
RAIL_VALUE = re.compile(r"\d+(mW)?(/\d+(mW)?)+")


def data_lines(path: Path) -> list[str]:
    """Every sample line of a capture, verbatim (comments and blank lines dropped)."""
    return [line.rstrip("\n") for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def line_of(tegrastats_dir: Path, name: str, index: int):
    return parse_tegrastats_line(data_lines(tegrastats_dir / name)[index])


def test_every_capture_file_is_known(tegrastats_dir):
    assert {p.name for p in tegrastats_dir.glob("*.txt")} == set(EXPECTED_LINES)


@pytest.mark.parametrize("name", sorted(EXPECTED_LINES))
def test_every_line_parses_completely(tegrastats_dir, name):
    lines = data_lines(tegrastats_dir / name)
    assert len(lines) == EXPECTED_LINES[name]
    for line in lines:
        sample = parse_tegrastats_line(line)
        assert sample.source == "tegrastats"
        assert sample.ram is not None and sample.ram.total_mb > 0, line
        assert sample.cpus, line
        # Only the 2017 L4T R24 TX1 line carries a field the Sample does not model (CPU EDP limit).
        expected_unknown = ("EDP", "limit", "1734") if "EDP limit" in line else ()
        assert sample.unknown == expected_unknown, line
        # Counted independently of the parser: every `name@xxC` token is a temperature and
        # every `a/b[mW]` token a rail, so none was lost or doubled.
        tokens = line.split()
        assert len(sample.temperatures) == sum(bool(TEMP_TOKEN.fullmatch(t)) for t in tokens), line
        assert len(sample.rails) == sum(bool(RAIL_VALUE.fullmatch(t)) for t in tokens), line
        assert all(core.online == (core.load_pct is not None) for core in sample.cpus)


def test_agx_orin_jetpack5_line(tegrastats_dir):
    s = line_of(tegrastats_dir, "agx-orin.txt", 0)
    assert s.time == datetime(2025, 7, 21, 16, 33, 42)
    assert s.ram == Memory(used_mb=17953, total_mb=62841, lfb_blocks=9, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=0, total_mb=31420, cached_mb=0)
    assert len(s.cpus) == 12
    assert s.cpus[0] == CpuCore(online=True, load_pct=7.0, freq_mhz=1728)
    assert s.cpus[3] == CpuCore(online=True, load_pct=42.0, freq_mhz=1036)
    assert s.cpus[8:] == (CpuCore(online=False),) * 4
    assert s.emc == Clocked(load_pct=12.0, freq_mhz=204)
    assert s.gpu == Clocked(load_pct=39.0, freq_mhz=305, gpc_freq_mhz=(305, 0))
    assert s.engines["NVENC"] == Clocked(online=False)
    assert s.engines["PVA0"] == Clocked(online=False)  # PVA0_FREQ: the _FREQ suffix is dropped
    assert s.engines["APE"] == Clocked(freq_mhz=174)
    assert set(s.engines) == {"NVENC", "NVDEC", "NVJPG", "NVJPG1", "VIC", "OFA", "NVDLA0", "NVDLA1", "PVA0", "APE"}
    assert s.temperatures["tj"] == Temperature(celsius=43.906)
    assert s.temperatures["gpu"].celsius == 40.093
    assert s.rails["VIN_SYS_5V0"] == Rail(current_mw=3315, average_mw=3315)
    # AGX Orin has no module-input rail: the total is the sum of the three rails.
    assert s.power_from == "sum"
    assert s.total_power_mw == 2798 + 799 + 3315
    assert s.cpu_percent == pytest.approx((7 + 31 + 7 + 42 + 4 + 5 + 6 + 1) / 8)
    assert s.gpu_percent == 39.0
    assert s.max_temp_c == 43.906


def test_agx_orin_irregular_spaces_line(tegrastats_dir):
    s = line_of(tegrastats_dir, "agx-orin.txt", 8)
    assert s.time is None
    assert s.ram == Memory(used_mb=29114, total_mb=30697, lfb_blocks=3, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=4915, total_mb=15348, cached_mb=1)
    assert s.cpus[5] == CpuCore(online=True, load_pct=100.0, freq_mhz=2201)
    assert s.emc == Clocked(load_pct=1.0, freq_mhz=2133)
    assert s.gpu == Clocked(load_pct=0.0, freq_mhz=305, gpc_freq_mhz=(305, 305))
    assert s.engines["NVDLA1"] == Clocked(online=False)
    assert s.engines["APE"] == Clocked(freq_mhz=174)
    assert s.temperatures["soc1"].celsius == 48.968
    assert s.rails["VDD_CPU_CV"] == Rail(current_mw=4405, average_mw=4405)


def test_agx_orin_jetpack7_line(tegrastats_dir):
    s = line_of(tegrastats_dir, "agx-orin.txt", 9)
    assert s.time == datetime(2026, 7, 25, 9, 8, 28)
    assert s.ram == Memory(used_mb=20642, total_mb=62817, lfb_blocks=1, lfb_block_kb=2048)
    assert s.swap is None
    assert len(s.cpus) == 12 and all(core.online and core.freq_mhz == 2201 for core in s.cpus)
    assert s.cpus[11].load_pct == 27.0
    assert s.emc == Clocked(load_pct=3.0, freq_mhz=3199)
    assert s.gpu == Clocked(load_pct=12.0, freq_mhz=1300, gpc_freq_mhz=(1300, 1300))
    assert s.engines["NVENC0"] == Clocked(online=False)
    assert s.temperatures["cpu"] == Temperature(celsius=52.968, extra_c=(52.968,))
    assert s.rails["VIN_SYS_5V0"] == Rail(current_mw=5500, average_mw=5500, extra_mw=(5500,))
    assert s.total_power_mw == 5139 + 3268 + 5500


def test_agx_xavier_rails_without_vdd_prefix(tegrastats_dir):
    s = line_of(tegrastats_dir, "agx-xavier.txt", 0)
    assert s.ram == Memory(used_mb=14700, total_mb=15692, lfb_blocks=3, lfb_block_kb=2048)
    assert s.swap == Swap(used_mb=898, total_mb=8192, cached_mb=23)
    assert s.cpus == (CpuCore(online=True, load_pct=0.0, freq_mhz=1190),) * 8
    assert s.emc == Clocked(load_pct=0.0)  # non-root: percentage only, no clock
    assert s.gpu == Clocked(load_pct=0.0)
    assert s.temperatures["GPU"].celsius == 30.5  # GPU@30.5C is a temperature ...
    assert s.rails["GPU"] == Rail(current_mw=463, average_mw=463)  # ... GPU 463/463 a rail
    assert s.rails["SYS5V"] == Rail(current_mw=3306, average_mw=3306)
    assert s.total_power_mw == 463 + 618 + 2936 + 0 + 309 + 3306
    # PMIC@100C is a placeholder; the hottest real zone is Tdiode.
    assert s.temperatures["PMIC"].celsius == 100.0
    assert s.max_temp_c == 32.0


def test_agx_xavier_sudo_line_with_mts(tegrastats_dir):
    s = line_of(tegrastats_dir, "agx-xavier.txt", 1)
    assert s.ram == Memory(used_mb=721, total_mb=31927, lfb_blocks=7291, lfb_block_kb=4096)
    assert [core.online for core in s.cpus] == [True] * 4 + [False] * 4
    assert s.cpus[0] == CpuCore(online=True, load_pct=2.0, freq_mhz=1190)
    assert s.emc == Clocked(load_pct=0.0, freq_mhz=665)
    assert s.gpu == Clocked(load_pct=0.0, freq_mhz=318)
    assert s.engines == {
        "APE": Clocked(freq_mhz=150),
        "MTS_FG": Clocked(load_pct=0.0),
        "MTS_BG": Clocked(load_pct=0.0),
    }
    assert s.temperatures["thermal"].celsius == 36.9
    assert s.rails["CPU"] == Rail(current_mw=311, average_mw=311)
    assert s.cpu_percent == pytest.approx(0.5)


def test_nano_sudo_lines(tegrastats_dir):
    s = line_of(tegrastats_dir, "nano.txt", 0)
    assert s.ram == Memory(used_mb=936, total_mb=3964, lfb_blocks=366, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=0, total_mb=4096, cached_mb=0)
    assert s.iram == Iram(used_kb=0, total_kb=252, lfb_kb=252)
    assert s.cpus == (
        CpuCore(True, 10.0, 102),
        CpuCore(True, 3.0, 102),
        CpuCore(True, 0.0, 102),
        CpuCore(True, 0.0, 102),
    )
    assert s.emc == Clocked(load_pct=0.0, freq_mhz=204)
    assert s.gpu == Clocked(load_pct=0.0, freq_mhz=76)
    assert s.engines == {"APE": Clocked(freq_mhz=25)}
    assert s.temperatures["PLL"].celsius == 24.0
    assert s.rails["POM_5V_IN"] == Rail(current_mw=920, average_mw=920)
    assert (s.power_from, s.total_power_mw) == ("POM_5V_IN", 920)

    s = line_of(tegrastats_dir, "nano.txt", 5)
    assert s.ram.used_mb == 1762 and s.ram.lfb_blocks == 252
    assert s.cpus[0] == CpuCore(True, 17.0, 204)
    assert s.emc == Clocked(load_pct=4.0, freq_mhz=1600)
    assert s.gpu == Clocked(load_pct=99.0, freq_mhz=921)
    assert s.temperatures["thermal"].celsius == 27.0
    assert s.rails["POM_5V_GPU"] == Rail(current_mw=2949, average_mw=182)
    assert s.total_power_mw == 5143


def test_nano_5w_line_without_rails(tegrastats_dir):
    s = line_of(tegrastats_dir, "nano.txt", 8)
    assert s.swap == Swap(used_mb=440, total_mb=1978, cached_mb=9)
    assert s.cpus == (CpuCore(True, 28.0, 921), CpuCore(True, 19.0, 921), CpuCore(False), CpuCore(False))
    assert s.cpu_percent == pytest.approx(23.5)
    assert s.temperatures["thermal"].celsius == 41.75
    assert s.rails == {}
    assert s.total_power_mw is None and s.power_from is None


def test_orin_nano_dated_lines(tegrastats_dir):
    s = line_of(tegrastats_dir, "orin-nano-nx.txt", 0)  # ends with a trailing space
    assert s.time == datetime(2026, 4, 27, 14, 59, 41)
    assert s.ram == Memory(used_mb=775, total_mb=7620, lfb_blocks=3, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=0, total_mb=3810, cached_mb=0)
    assert s.cpus[0] == CpuCore(True, 1.0, 729) and len(s.cpus) == 6
    assert s.emc is None  # non-root Orin prints no EMC_FREQ
    assert s.gpu == Clocked(load_pct=0.0)
    assert s.temperatures["tj"].celsius == 49.156
    assert s.rails["VDD_IN"] == Rail(current_mw=4761, average_mw=4778)
    assert (s.power_from, s.total_power_mw) == ("VDD_IN", 4761)

    s = line_of(tegrastats_dir, "orin-nano-nx.txt", 3)
    assert s.time == datetime(2026, 4, 27, 15, 0, 54)
    assert s.cpus[5] == CpuCore(True, 0.0, 1344)
    assert s.rails["VDD_SOC"] == Rail(current_mw=2380, average_mw=2380)


def test_orin_nx_line_with_vic(tegrastats_dir):
    s = line_of(tegrastats_dir, "orin-nano-nx.txt", 6)
    assert s.ram == Memory(used_mb=6334, total_mb=15388, lfb_blocks=1770, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=491, total_mb=7694, cached_mb=0)
    assert s.cpus[3] == CpuCore(True, 16.0, 729) and s.cpus[4] == CpuCore(False)
    assert s.emc == Clocked(load_pct=0.0, freq_mhz=2133)
    assert s.gpu == Clocked(load_pct=0.0, freq_mhz=611)
    assert s.engines == {"VIC": Clocked(freq_mhz=729), "APE": Clocked(freq_mhz=174)}
    assert s.temperatures["CV0"].celsius == 45.812
    assert s.rails["VDD_IN"] == Rail(current_mw=5299, average_mw=5299)


def test_tx1_lines(tegrastats_dir):
    s = line_of(tegrastats_dir, "tx1.txt", 0)
    assert s.ram == Memory(used_mb=1179, total_mb=3983, lfb_blocks=120, lfb_block_kb=4096)
    assert s.swap is None
    assert s.iram == Iram(used_kb=0, total_kb=252, lfb_kb=252)
    assert s.cpus[1] == CpuCore(True, 4.0, 102)
    assert s.emc == Clocked(load_pct=7.0, freq_mhz=408)
    assert s.gpu == Clocked(load_pct=0.0, freq_mhz=76)
    assert s.temperatures["Tdiode"].celsius == 42.75
    assert s.rails["VDD_CPU"] == Rail(current_mw=76, average_mw=178)
    assert s.total_power_mw == 2532

    # L4T R24: lower-case "cpu", one clock after the bracket, EMC/GR3D without _FREQ, AVP/MSENC.
    s = line_of(tegrastats_dir, "tx1.txt", 1)
    assert s.ram == Memory(used_mb=1104, total_mb=3995, lfb_blocks=425, lfb_block_kb=4096)
    assert s.cpus == tuple(CpuCore(True, load, 1734) for load in (2.0, 5.0, 8.0, 11.0))
    assert s.emc == Clocked(load_pct=0.0, freq_mhz=1600)
    assert s.gpu == Clocked(load_pct=0.0, freq_mhz=998)
    assert s.engines == {
        "AVP": Clocked(load_pct=1.0, freq_mhz=115),
        "NVDEC": Clocked(freq_mhz=192),
        "MSENC": Clocked(freq_mhz=192),
    }
    assert s.unknown == ("EDP", "limit", "1734")


def test_tx2_lines(tegrastats_dir):
    s = line_of(tegrastats_dir, "tx2.txt", 0)
    assert s.ram == Memory(used_mb=284, total_mb=7860, lfb_blocks=1808, lfb_block_kb=4096)
    assert s.cpus == (
        CpuCore(True, 48.0, 2034),
        CpuCore(False),
        CpuCore(False),
        CpuCore(True, 53.0, 2034),
        CpuCore(True, 43.0, 2033),
        CpuCore(True, 41.0, 2034),
    )
    assert s.emc == Clocked(load_pct=2.0, freq_mhz=1600)
    assert s.gpu == Clocked(load_pct=None, freq_mhz=0)  # "GR3D_FREQ @0": clock only
    assert s.gpu_percent is None
    assert s.temperatures["BCPU"].celsius == 29.5
    assert s.rails["VDD_4V0_WIFI"] == Rail(current_mw=38, average_mw=38)
    # VDD_IN is the module input even when the VDD_SYS_* rails are printed beside it.
    assert (s.power_from, s.total_power_mw) == ("VDD_IN", 3566)

    s = line_of(tegrastats_dir, "tx2.txt", 3)  # non-root: no EMC_FREQ / GR3D_FREQ at all
    assert s.emc is None and s.gpu is None
    assert s.cpus == (CpuCore(True, 0.0, 2035),) * 6
    assert s.temperatures["Tdiode"].celsius == 31.25
    assert s.rails["VDD_WIFI"] == Rail(current_mw=0, average_mw=0)
    assert s.total_power_mw == 3624


def test_xavier_nx_lines(tegrastats_dir):
    s = line_of(tegrastats_dir, "xavier-nx.txt", 0)
    assert s.time == datetime(2025, 10, 1, 20, 5, 55)
    assert s.ram == Memory(used_mb=2274, total_mb=6834, lfb_blocks=27, lfb_block_kb=4096)
    assert s.swap == Swap(used_mb=542, total_mb=3417, cached_mb=2)
    assert s.cpus[:2] == (CpuCore(True, 99.0, 1189), CpuCore(True, 100.0, 1188)) and s.cpus[4:] == (CpuCore(False),) * 2
    assert s.emc == Clocked(load_pct=0.0)
    assert s.gpu == Clocked(load_pct=22.0)
    assert s.temperatures["thermal"].celsius == 37.85
    assert s.rails["VDD_IN"] == Rail(current_mw=5542, average_mw=5542)

    s = line_of(tegrastats_dir, "xavier-nx.txt", 3)
    assert s.ram == Memory(used_mb=5408, total_mb=6834, lfb_blocks=2, lfb_block_kb=128)
    s = line_of(tegrastats_dir, "xavier-nx.txt", 6)
    assert s.time == datetime(2025, 10, 1, 20, 6, 9)
    assert s.ram.lfb_block_kb == 1024
    assert s.gpu_percent == 99.0
    assert s.rails["VDD_CPU_GPU_CV"] == Rail(current_mw=7618, average_mw=2997)
    assert s.total_power_mw == 13552


def test_offline_sensor_is_none_and_ignored_by_max():
    s = parse_tegrastats_line("RAM 1/2MB CPU [1%@100] cpu@45.5C tj@-256C gpu@-256C/-256C PMIC@100C")
    assert s.temperatures["tj"] == Temperature(celsius=None)
    assert s.temperatures["gpu"] == Temperature(celsius=None, extra_c=(None,))
    assert s.max_temp_c == 45.5
    assert s.unknown == ()


def test_per_gpc_arrays_with_and_without_load():
    thor = parse_tegrastats_line("RAM 4722/7844MB (lfb 1x512kB) EMC_FREQ 2%@1866 GR3D_FREQ @[1000,1000,1000] APE 150")
    assert thor.ram.lfb_block_kb == 512
    assert thor.gpu == Clocked(load_pct=None, freq_mhz=1000, gpc_freq_mhz=(1000, 1000, 1000))
    orin = parse_tegrastats_line("GR3D_FREQ 0%@[305,0]")
    assert orin.gpu == Clocked(load_pct=0.0, freq_mhz=305, gpc_freq_mhz=(305, 0))


def test_emc_clock_without_percentage_and_engine_with_load():
    s = parse_tegrastats_line("EMC_FREQ @2133 VIC_FREQ 5%@115 NVDEC1 1075 NVJPG off")
    assert s.emc == Clocked(freq_mhz=2133)
    assert s.engines == {
        "VIC": Clocked(load_pct=5.0, freq_mhz=115),
        "NVDEC1": Clocked(freq_mhz=1075),
        "NVJPG": Clocked(online=False),
    }


def test_cores_without_clock_and_rails_with_mixed_units():
    s = parse_tegrastats_line("CPU [12%,off,30%] VDD_IN 5000mW/4000 CPU 100/90mW")
    assert s.cpus == (CpuCore(True, 12.0, None), CpuCore(False), CpuCore(True, 30.0, None))
    assert s.rails == {"VDD_IN": Rail(5000, 4000), "CPU": Rail(100, 90)}


@pytest.mark.parametrize(
    ("line", "unknown"),
    [
        ("", ()),
        ("hello world", ("hello", "world")),
        ("RAM lots", ("RAM", "lots")),
        ("CPU [abc,12%]", ("CPU", "[abc,12%]")),
        ("13-45-2020 10:00:00 RAM 5/10MB", ("13-45-2020", "10:00:00")),
        ("GR3D_FREQ 12%@ ~~~", ("GR3D_FREQ", "12%@", "~~~")),
        ("VDD_IN 5/", ("VDD_IN", "5/")),
    ],
)
def test_garbage_is_kept_not_fatal(line, unknown):
    assert parse_tegrastats_line(line).unknown == unknown


def test_a_date_that_is_not_a_date_leaves_the_rest_parsed():
    s = parse_tegrastats_line("13-45-2020 10:00:00 RAM 5/10MB")
    assert s.time is None
    assert s.ram == Memory(used_mb=5, total_mb=10)


def test_random_text_never_raises():
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + " %@/[],.()-:xCmW"
    for _ in range(2000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        sample = parse_tegrastats_line(line)
        assert all(token.strip() for token in sample.unknown)
