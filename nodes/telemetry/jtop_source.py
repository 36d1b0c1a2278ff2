"""Telemetry from the jetson-stats service (`jtop`), the richest source on a Jetson where the service runs.

The mapping reads jtop's documented properties (`cpu`, `memory`, `gpu`, `engine`,
`temperature`, `power`; see the jetson-stats reference for `jtop.jtop`) rather than its
flattened `stats` dict, because `stats` reduces RAM and swap to ratios and drops every clock;
the properties carry kB and kHz figures that map one-to-one onto a Sample.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

from nodes.errors import TelemetryError
from nodes.telemetry.sample import (
    Clocked,
    CpuCore,
    Iram,
    Memory,
    Rail,
    Sample,
    Swap,
    Temperature,
    offline_if_impossible,
)
from nodes.telemetry.source import TelemetrySource, validate_interval

# jtop reports memory in kB, clocks in kHz and the largest free block as a count of 4 MB blocks.
_LFB_BLOCK_KB = 4096


class JtopSource(TelemetrySource):
    """Samples from a connected `jtop.jtop` client; its blocking calls run in a worker thread."""

    name = "jtop"

    def __init__(self, interval: float, client: Any) -> None:
        super().__init__(interval)
        self._client = client
        self._closed = False

    @classmethod
    async def open(cls, interval: float, *, start_timeout: float = 5.0) -> JtopSource:
        """Connect to the jtop service; TelemetryError when jetson-stats is missing or its service does not answer."""
        validate_interval(interval)
        try:
            from jtop import JtopException, jtop
        except ImportError:
            raise TelemetryError("jetson-stats (jtop) is not installed") from None
        client = jtop(interval=interval)
        try:
            await asyncio.wait_for(asyncio.to_thread(client.start), start_timeout)
        except JtopException as exc:
            raise TelemetryError(f"jtop service unavailable: {_flat(exc)}") from None
        except (TimeoutError, asyncio.TimeoutError):
            raise TelemetryError(f"jtop service did not answer within {start_timeout:g} s") from None
        except OSError as exc:
            raise TelemetryError(f"jtop service unreachable: {exc}") from None
        return cls(interval, client)

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield a Sample each time the service publishes new data."""
        while not self._closed:
            try:
                fresh = await asyncio.to_thread(self._client.ok)
            except Exception as exc:  # jtop re-raises whatever broke its reader thread
                raise TelemetryError(f"jtop client failed: {_flat(exc)}") from None
            if self._closed:
                return
            if not fresh:
                raise TelemetryError("jtop service stopped publishing")
            yield sample_from_jtop(_snapshot(self._client), time=datetime.now().astimezone())

    async def close(self) -> None:
        """Disconnect from the service."""
        if not self._closed:
            self._closed = True
            await asyncio.to_thread(self._client.close)


def _snapshot(client: Any) -> dict[str, Any]:
    return {
        "cpu": client.cpu,
        "memory": dict(client.memory.items()),
        "gpu": dict(client.gpu.items()),
        "engine": client.engine,
        "temperature": client.temperature,
        "power": client.power,
    }


def sample_from_jtop(snapshot: Mapping[str, Any], *, time: datetime | None = None) -> Sample:
    """Map jtop's property dicts into a Sample.

    ``snapshot`` holds jtop's properties under their names: ``cpu`` ({"cpu": [per-core dicts]}),
    ``memory`` ({"RAM", "SWAP", "EMC"?, "IRAM"?}), ``gpu`` ({name: {"status", "freq"}}),
    ``engine`` ({group: {name: {"online", "cur"}}}), ``temperature`` ({name: {"online", "temp"}})
    and ``power`` ({"rail": {name: {"power", "avg"}}, "tot": {...}}). Missing parts map to None or
    empty. When jtop used an input rail for its total it removed that rail from ``rail`` and
    named it in ``tot``; it is put back, so `Sample.total_power_mw` picks the same figure.
    """
    memory = snapshot.get("memory") or {}
    return Sample(
        source="jtop",
        time=time,
        ram=_ram(memory.get("RAM")),
        swap=_swap(memory.get("SWAP")),
        iram=_iram(memory.get("IRAM")),
        cpus=tuple(_core(core) for core in (snapshot.get("cpu") or {}).get("cpu", [])),
        emc=_emc(memory.get("EMC")),
        gpu=_gpu(snapshot.get("gpu") or {}),
        engines={
            name: _engine(engine)
            for group in (snapshot.get("engine") or {}).values()
            for name, engine in group.items()
        },
        temperatures={
            name: Temperature(celsius=offline_if_impossible(float(zone["temp"])) if zone.get("online", True) else None)
            for name, zone in (snapshot.get("temperature") or {}).items()
        },
        rails=_rails(snapshot.get("power") or {}),
    )


def _mhz(khz: Any) -> int | None:
    return int(khz) // 1000 if khz is not None else None


def _ram(ram: Mapping | None) -> Memory | None:
    if not ram:
        return None
    lfb = ram.get("lfb")
    return Memory(
        used_mb=int(ram["used"]) // 1024,
        total_mb=int(ram["tot"]) // 1024,
        lfb_blocks=int(lfb) if lfb is not None else None,
        lfb_block_kb=_LFB_BLOCK_KB if lfb is not None else None,
    )


def _swap(swap: Mapping | None) -> Swap | None:
    if not swap:
        return None
    cached = swap.get("cached")
    return Swap(
        used_mb=int(swap["used"]) // 1024,
        total_mb=int(swap["tot"]) // 1024,
        cached_mb=int(cached) // 1024 if cached is not None else None,
    )


def _iram(iram: Mapping | None) -> Iram | None:
    if not iram:
        return None
    lfb = iram.get("lfb")
    return Iram(used_kb=int(iram["used"]), total_kb=int(iram["tot"]), lfb_kb=int(lfb) if lfb is not None else None)


def _core(core: Mapping) -> CpuCore:
    if not core.get("online", True):
        return CpuCore(online=False)
    idle = core.get("idle")
    return CpuCore(
        online=True,
        # jtop's own stats report a core's load as 100 - idle; the same figure is used here.
        load_pct=100.0 - float(idle) if idle is not None else None,
        freq_mhz=_mhz((core.get("freq") or {}).get("cur")),
    )


def _emc(emc: Mapping | None) -> Clocked | None:
    if not emc:
        return None
    if not emc.get("online", True):
        return Clocked(online=False)
    val = emc.get("val")
    return Clocked(load_pct=float(val) if val is not None else None, freq_mhz=_mhz(emc.get("cur")))


def _gpu(gpus: Mapping) -> Clocked | None:
    # A Jetson has one integrated GPU; jtop keys it by its device name (gv11b, ga10b, gpu...).
    for gpu in gpus.values():
        if gpu.get("type", "integrated") != "integrated":
            continue
        load = (gpu.get("status") or {}).get("load")
        freq = gpu.get("freq") or {}
        gpcs = tuple(int(f) // 1000 for f in freq.get("GPC") or ())
        return Clocked(
            load_pct=float(load) if load is not None else None,
            freq_mhz=_mhz(freq.get("cur")),
            gpc_freq_mhz=gpcs,
        )
    return None


def _engine(engine: Mapping) -> Clocked:
    if not engine.get("online", False):
        return Clocked(online=False)
    return Clocked(freq_mhz=_mhz(engine.get("cur")))


def _rails(power: Mapping) -> dict[str, Rail]:
    rails = {
        name: Rail(current_mw=round(rail["power"]), average_mw=round(rail["avg"]) if "avg" in rail else None)
        for name, rail in (power.get("rail") or {}).items()
        if rail.get("online", True) and "power" in rail
    }
    total = power.get("tot") or {}
    if "name" in total and "power" in total:
        avg = total.get("avg")
        rails[total["name"]] = Rail(
            current_mw=round(total["power"]), average_mw=round(avg) if avg is not None else None
        )
    return rails


def _flat(exc: BaseException) -> str:
    # jtop's messages span lines ("...not active. Please run:\nsudo jtop --install-service").
    return " ".join(str(exc).split()) or type(exc).__name__
