"""Telemetry read straight from /proc and /sys, for a board without psutil (JetPack ships none): CPU, RAM, swap, temps."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from nodes.errors import TelemetryError
from nodes.telemetry.sample import (
    CpuCore,
    Memory,
    Sample,
    Swap,
    Temperature,
    offline_if_impossible,
)
from nodes.telemetry.source import PolledSource, validate_interval

_KIB_PER_MIB = 1024


class ProcSource(PolledSource):
    """Samples Linux's own counters: per-core load from /proc/stat, memory from /proc/meminfo,
    clocks from cpufreq and temperatures from the thermal zones; no GPU (tegrastats has that).

    The same figures psutil reports, read the same way, so the console cannot tell the two apart
    except by the source name; offline cores (a Jetson power model parks some) are listed offline.
    """

    name = "proc"

    def __init__(self, interval: float, root: Path = Path("/")) -> None:
        super().__init__(interval)
        self.root = root
        self._previous = self._cpu_times()

    @classmethod
    async def open(cls, interval: float, root: Path = Path("/")) -> ProcSource:
        """Open the source; raises TelemetryError when /proc/stat cannot be read (not Linux)."""
        validate_interval(interval)
        try:
            return cls(interval, root)
        except OSError as exc:
            raise TelemetryError(f"cannot read /proc/stat: {exc.strerror or exc}") from None

    def read(self) -> Sample:
        """Take one reading now; CPU load covers the time since the previous reading."""
        now = self._cpu_times()
        cpus = []
        for index in range(self._core_count()):
            name = f"cpu{index}"
            if name not in now:
                cpus.append(CpuCore(online=False))
                continue
            load = _load(self._previous.get(name), now[name])
            cpus.append(CpuCore(online=True, load_pct=load, freq_mhz=self._freq_mhz(index)))
        self._previous = now
        info = self._meminfo()
        total, available = info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))
        swap_total, swap_free = info.get("SwapTotal", 0), info.get("SwapFree", 0)
        return Sample(
            source="proc",
            time=datetime.now().astimezone(),
            ram=Memory(used_mb=(total - available) // _KIB_PER_MIB, total_mb=total // _KIB_PER_MIB),
            swap=Swap(used_mb=(swap_total - swap_free) // _KIB_PER_MIB, total_mb=swap_total // _KIB_PER_MIB),
            cpus=tuple(cpus),
            temperatures=self._temperatures(),
        )


    def _cpu_times(self) -> dict[str, tuple[int, int]]:
        """``cpuN`` -> (busy, total) jiffies of each online core."""
        times = {}
        for line in (self.root / "proc/stat").read_text().splitlines():
            fields = line.split()
            if fields and fields[0].startswith("cpu") and fields[0] != "cpu":
                values = [int(v) for v in fields[1:9]]
                idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
                times[fields[0]] = (sum(values) - idle, sum(values))
        return times

    def _core_count(self) -> int:
        present = _read(self.root / "sys/devices/system/cpu/present")  # e.g. "0-5", offline cores included
        if present:
            last = present.split(",")[-1].split("-")[-1]
            if last.isdigit():
                return int(last) + 1
        return len(self._previous)

    def _freq_mhz(self, core: int) -> int | None:
        khz = _read(self.root / f"sys/devices/system/cpu/cpu{core}/cpufreq/scaling_cur_freq")
        return round(int(khz) / 1000) if khz and khz.isdigit() else None

    def _meminfo(self) -> dict[str, int]:
        values = {}
        for line in (_read(self.root / "proc/meminfo") or "").splitlines():
            name, _, rest = line.partition(":")
            fields = rest.split()
            if fields and fields[0].isdigit():
                values[name] = int(fields[0])  # kB
        return values

    def _temperatures(self) -> dict[str, Temperature]:
        temps = {}
        for zone in sorted((self.root / "sys/class/thermal").glob("thermal_zone*")):
            name, milli = _read(zone / "type"), _read(zone / "temp")
            if name and milli and milli.lstrip("-").isdigit():
                temps[name] = Temperature(celsius=offline_if_impossible(int(milli) / 1000))
        return temps


def _load(before: tuple[int, int] | None, after: tuple[int, int]) -> float | None:
    if before is None:
        return None
    total = after[1] - before[1]
    return round(100.0 * (after[0] - before[0]) / total, 1) if total > 0 else 0.0


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
