"""The /proc telemetry source: a board without psutil still reports CPU, memory and temperatures."""

from __future__ import annotations

import asyncio
import sys

import psutil
import pytest

from nodes.errors import TelemetryError
from nodes.telemetry.choose import open_best_source
from nodes.telemetry.proc_source import ProcSource


async def test_proc_source_agrees_with_psutil_on_this_machine():
    source = await ProcSource.open(0.05)
    await asyncio.sleep(0.1)
    sample = source.read()
    assert sample.source == "proc"
    online = [core for core in sample.cpus if core.online]
    assert len(online) == psutil.cpu_count()
    assert all(0.0 <= core.load_pct <= 100.0 for core in online)
    assert sample.ram.total_mb == psutil.virtual_memory().total // 2**20
    assert 0 < sample.ram.used_mb < sample.ram.total_mb
    await source.close()


async def test_proc_source_lists_parked_cores_offline_and_reads_zones(tmp_path):
    # A TX2 in a power model with cores 1-2 parked: /proc/stat lists only the online ones.
    (tmp_path / "proc").mkdir()
    stat = tmp_path / "proc" / "stat"
    stat.write_text("cpu  40 0 10 50 0 0 0 0\ncpu0 10 0 0 90 0 0 0 0\ncpu3 30 0 10 60 0 0 0 0\n")
    (tmp_path / "proc" / "meminfo").write_text("MemTotal: 8000000 kB\nMemAvailable: 6000000 kB\n"
                                               "SwapTotal: 0 kB\nSwapFree: 0 kB\n")
    cpu = tmp_path / "sys" / "devices" / "system" / "cpu"
    (cpu / "cpu0" / "cpufreq").mkdir(parents=True)
    (cpu / "present").write_text("0-3\n")
    (cpu / "cpu0" / "cpufreq" / "scaling_cur_freq").write_text("2035200\n")
    zone = tmp_path / "sys" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "type").write_text("CPU-therm\n")
    (zone / "temp").write_text("41500\n")
    source = await ProcSource.open(1.0, root=tmp_path)
    stat.write_text("cpu  0 0 0 0 0 0 0 0\ncpu0 60 0 0 140 0 0 0 0\ncpu3 30 0 10 160 0 0 0 0\n")
    sample = source.read()
    assert [core.online for core in sample.cpus] == [True, False, False, True]
    assert (sample.cpus[0].load_pct, sample.cpus[0].freq_mhz) == (50.0, 2035)
    assert sample.cpus[3].load_pct == 0.0
    assert (sample.ram.used_mb, sample.ram.total_mb) == (1953, 7812)
    assert sample.temperatures["CPU-therm"].celsius == 41.5


async def test_best_source_falls_back_to_proc_without_psutil(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # as on JetPack: `import psutil` fails
    choice = await open_best_source(0.05, tegrastats_command=[str(tmp_path / "none")], use_jtop=False)
    try:
        assert choice.source.name == "proc"
        assert [name for name, _ in choice.skipped] == ["tegrastats", "psutil"]
        assert "psutil is not installed" in choice.describe()
        async for sample in choice.source.samples():
            assert sample.ram.total_mb > 0
            break
    finally:
        await choice.source.close()


async def test_proc_source_off_linux_is_refused(tmp_path):
    with pytest.raises(TelemetryError, match="cannot read /proc/stat"):
        await ProcSource.open(1.0, root=tmp_path)
