"""One telemetry reading of a node, shared by every source (tegrastats, jtop, psutil, /proc), plus its derived figures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

SourceName = Literal["jtop", "tegrastats", "psutil", "proc"]

# Rails that measure the whole module input, best first (the order jetson-stats uses):
#   VIN        Jetson Thor carrier INA238, the complete system input.
#   POM_5V_IN  Jetson Nano (all L4T 32.x).
#   VDD_IN     TX1, TX2 family, Xavier NX, Orin Nano, Orin NX.
# Boards without one of these sum every rail they print:
#   AGX Xavier (GPU CPU SOC CV VDDRQ SYS5V, no VDD_ prefix on JetPack 4) and
#   AGX Orin (VDD_GPU_SOC VDD_CPU_CV VIN_SYS_5V0 [VDDQ_VDD2_1V8AO]). On AGX Orin VIN_SYS_5V0 is
#   the 5 V system branch (I/O, DDR), not the module input: the captures show it reading
#   3315 mW while VDD_GPU_SOC + VDD_CPU_CV read 3597 mW, so it cannot be the total.
INPUT_RAILS = ("VIN", "POM_5V_IN", "VDD_IN")

# A thermal zone that reads below this is offline: tegrastats and jetson-stats print -256 C,
# and no board sensor can be that cold.
OFFLINE_BELOW_C = -100.0

# PMIC zones on TX1/TX2/Nano/Xavier print a fixed placeholder (50 C or 100 C), not a measurement;
# jetson-stats hides them for the same reason, so the maximum temperature ignores them.
PLACEHOLDER_SENSORS = frozenset({"pmic"})


@dataclass(frozen=True)
class CpuCore:
    """One CPU core as the source reported it."""

    online: bool
    """False when the core is powered down (tegrastats prints `off`)."""
    load_pct: float | None = None
    """Busy share of the core in percent, None when off or not reported."""
    freq_mhz: int | None = None
    """Current clock in MHz, None when off or not reported."""


@dataclass(frozen=True)
class Clocked:
    """A clocked unit (memory controller, GPU, engine): how busy it is and how fast it runs."""

    online: bool = True
    """False when the unit is clock-gated (tegrastats prints `off`)."""
    load_pct: float | None = None
    """Utilisation in percent relative to the current clock, None when not reported."""
    freq_mhz: int | None = None
    """Current clock in MHz (the fastest GPC when per-GPC clocks are given), None when not reported."""
    gpc_freq_mhz: tuple[int, ...] = ()
    """Per-GPC clocks in MHz (Orin/Thor `@[f0,f1]`), empty when the unit has a single clock."""


@dataclass(frozen=True)
class Memory:
    """Main memory (RAM) use."""

    used_mb: int
    """RAM in use by applications, MB (tegrastats' figure: total - free - buffers - cache)."""
    total_mb: int
    """RAM available to Linux, MB."""
    lfb_blocks: int | None = None
    """Number of free blocks of the largest size (`lfb NxS`), None when not reported."""
    lfb_block_kb: int | None = None
    """Size of one such block in kB (4096 for `4MB`), None when not reported."""

    @property
    def percent(self) -> float | None:
        """Used share of RAM in percent, None when the total is zero."""
        return 100.0 * self.used_mb / self.total_mb if self.total_mb > 0 else None


@dataclass(frozen=True)
class Swap:
    """Swap use."""

    used_mb: int
    """Swap in use, MB."""
    total_mb: int
    """Swap configured, MB."""
    cached_mb: int | None = None
    """Swap also held in RAM (`cached`), MB, None when not reported."""


@dataclass(frozen=True)
class Iram:
    """IRAM, the memory local to the video engines (TX1, Nano)."""

    used_kb: int
    """IRAM in use, kB."""
    total_kb: int
    """IRAM size, kB."""
    lfb_kb: int | None = None
    """Largest free block, kB, None when not reported."""


@dataclass(frozen=True)
class Temperature:
    """One thermal zone."""

    celsius: float | None
    """Current temperature in degrees Celsius, None when the sensor is offline (-256 C)."""
    extra_c: tuple[float | None, ...] = ()
    """Further figures printed after the first (JetPack 7.2 prints `cur/second`), kept as read."""


@dataclass(frozen=True)
class Rail:
    """One power rail."""

    current_mw: int
    """Instantaneous power in mW."""
    average_mw: int | None = None
    """Average power since the monitor started, mW, None when the source has no average."""
    extra_mw: tuple[int, ...] = ()
    """Further figures after `cur/avg` (JetPack 7.2 prints a third one), kept as read."""


@dataclass(frozen=True)
class Sample:
    """One reading of a node. Mappings are plain dicts for easy reading; treat them as read-only."""

    source: SourceName
    """Which source produced the reading."""
    time: datetime | None = None
    """When it was taken: naive board-local time from a tegrastats date prefix, aware otherwise."""
    ram: Memory | None = None
    """RAM use, None when not reported."""
    swap: Swap | None = None
    """Swap use, None when not reported (older L4T omit it when no swap is configured)."""
    iram: Iram | None = None
    """IRAM use (TX1, Nano), None elsewhere."""
    cpus: tuple[CpuCore, ...] = ()
    """Every CPU core in index order, offline ones included."""
    emc: Clocked | None = None
    """External memory controller (`EMC_FREQ`), None when not reported (tegrastats without root on Orin)."""
    gpu: Clocked | None = None
    """Integrated GPU (`GR3D_FREQ`), None when not reported or on a machine without a Jetson GPU."""
    engines: Mapping[str, Clocked] = field(default_factory=dict)
    """Other hardware engines by name (`_FREQ` suffix dropped): APE, NVENC, NVDEC, VIC, NVDLA0, MTS_FG..."""
    temperatures: Mapping[str, Temperature] = field(default_factory=dict)
    """Thermal zones by the name the source uses (`cpu`, `GPU`, `tj`, `Tboard`...)."""
    rails: Mapping[str, Rail] = field(default_factory=dict)
    """Power rails by name as printed (`VDD_IN`, `POM_5V_GPU`, `GPU` on AGX Xavier JetPack 4...)."""
    unknown: tuple[str, ...] = ()
    """Raw tokens the parser did not recognise, in order; empty for a fully understood line."""

    @property
    def cpu_percent(self) -> float | None:
        """Mean load of the online cores in percent, None when no core reports a load."""
        loads = [core.load_pct for core in self.cpus if core.online and core.load_pct is not None]
        return sum(loads) / len(loads) if loads else None

    @property
    def gpu_percent(self) -> float | None:
        """GPU load in percent, None when not reported."""
        return self.gpu.load_pct if self.gpu is not None else None

    @property
    def ram_percent(self) -> float | None:
        """Used share of RAM in percent, None when not reported."""
        return self.ram.percent if self.ram is not None else None

    @property
    def max_temp_c(self) -> float | None:
        """Hottest online thermal zone in Celsius, ignoring PMIC placeholders; None when there is none."""
        temps = [
            temp.celsius
            for name, temp in self.temperatures.items()
            if temp.celsius is not None and name.lower() not in PLACEHOLDER_SENSORS
        ]
        return max(temps) if temps else None

    @property
    def power_from(self) -> str | None:
        """Where `total_power_mw` comes from: the input rail's name, `sum` of all rails, or None without rails."""
        for name in INPUT_RAILS:
            if name in self.rails:
                return name
        return "sum" if self.rails else None

    @property
    def total_power_mw(self) -> int | None:
        """Board power in mW: the input rail when the board has one (see INPUT_RAILS), else the sum of rails."""
        origin = self.power_from
        if origin is None:
            return None
        if origin == "sum":
            return sum(rail.current_mw for rail in self.rails.values())
        return self.rails[origin].current_mw


def offline_if_impossible(celsius: float) -> float | None:
    """The reading, or None when it is the offline marker (anything below OFFLINE_BELOW_C)."""
    return None if celsius < OFFLINE_BELOW_C else celsius
