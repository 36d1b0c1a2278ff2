"""Telemetry from psutil for machines without Jetson tools (laptops, the emulated cluster): CPU, RAM, swap, temps."""

from __future__ import annotations

from datetime import datetime

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

_MIB = 1024 * 1024


class PsutilSource(PolledSource):
    """Samples this machine through psutil: per-core load and clock, RAM, swap, temperatures; no GPU.

    Each reading is a handful of /proc and /sys reads (well under a millisecond of CPU on Linux,
    see benchmarks/telemetry_psutil.py), so it runs inline on the event loop rather than paying
    for a thread hop. psutil reports only online cores, so `cpus` has no offline entries.
    """

    name = "psutil"

    def __init__(self, interval: float, psutil_module) -> None:
        super().__init__(interval)
        self._psutil = psutil_module
        self._has_temps = hasattr(psutil_module, "sensors_temperatures")

    @classmethod
    async def open(cls, interval: float) -> PsutilSource:
        """Open the source; raises TelemetryError when psutil is missing."""
        validate_interval(interval)
        try:
            import psutil
        except ImportError:
            raise TelemetryError("psutil is not installed") from None
        source = cls(interval, psutil)
        # The first cpu_percent() call only sets the baseline the next one measures from.
        psutil.cpu_percent(percpu=True)
        return source

    def read(self) -> Sample:
        """Take one reading now; CPU load covers the time since the previous reading."""
        ps = self._psutil
        loads = ps.cpu_percent(percpu=True)
        freqs = self._core_freqs(len(loads))
        vm = ps.virtual_memory()
        sw = ps.swap_memory()
        return Sample(
            source="psutil",
            time=datetime.now().astimezone(),
            ram=Memory(used_mb=vm.used // _MIB, total_mb=vm.total // _MIB),
            swap=Swap(used_mb=sw.used // _MIB, total_mb=sw.total // _MIB),
            cpus=tuple(CpuCore(online=True, load_pct=float(load), freq_mhz=freq) for load, freq in zip(loads, freqs)),
            temperatures=self._temperatures(),
        )


    def _core_freqs(self, cores: int) -> list[int | None]:
        try:
            freqs = self._psutil.cpu_freq(percpu=True)
        except (AttributeError, NotImplementedError, OSError):
            freqs = []
        if len(freqs) == cores:
            return [round(f.current) if f.current else None for f in freqs]
        if len(freqs) == 1:  # some kernels expose one policy for every core
            return [round(freqs[0].current) if freqs[0].current else None] * cores
        return [None] * cores

    def _temperatures(self) -> dict[str, Temperature]:
        if not self._has_temps:
            return {}
        temps: dict[str, Temperature] = {}
        for chip, entries in self._psutil.sensors_temperatures().items():
            for index, entry in enumerate(entries):
                if len(entries) == 1 and not entry.label:
                    name = chip
                else:
                    name = f"{chip}/{entry.label or index}"
                temps[name] = Temperature(celsius=offline_if_impossible(float(entry.current)))
        return temps
