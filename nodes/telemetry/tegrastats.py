"""Parser of one `tegrastats` line (TX1 to Orin, L4T R24 to JetPack 7) into a telemetry Sample.

tegrastats prints space-separated fields whose set and spelling vary by board, L4T release and
privilege (NVIDIA, "tegrastats Utility" in the Jetson Linux Developer Guide). The parser walks
the line left to right; at each position it tries the field rules below in order and, when none
fits, keeps the next whitespace-delimited token in `Sample.unknown`. It never raises on content.

    [MM-DD-YYYY HH:MM:SS]                 date prefix (JetPack 5+), board local time
    RAM u/tMB (lfb NxSMB)                 RAM, largest-free-block count and size
    SWAP u/tMB (cached cMB)               swap
    IRAM u/tkB(lfb fkB)                   IRAM (TX1, Nano)
    CPU [l%@f,l%@f,off,l%,...]            per-core load/clock; `off` = core powered down
    cpu [l%,l%,...]@f                     L4T R24 (TX1): one clock for all cores
    MTS fg l% bg l%                       AGX Xavier MTS foreground/background
    NAME c/a[/x] with optional mW         power rail (VDD_IN, POM_5V_IN, GPU on AGX Xavier JP4...)
    NAME off | l% | l%@f | @f | f | l%@[f,f]   clocked unit: EMC_FREQ/EMC, GR3D_FREQ/GR3D, engines
    name@tC[/tC]                          thermal zone; -256C = offline
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

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

_KB = {"kB": 1, "KB": 1, "MB": 1024, "GB": 1024 * 1024}
_UNIT = r"([kKMG]B)"
_NUM = r"(-?\d+(?:\.\d+)?)"
# Every rule must end on a token boundary, so "APE 174" never half-matches "APE 174/200".
_END = r"(?=\s|$)"

_DATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})\s+(\d{2}):(\d{2}):(\d{2})" + _END)
_RAM = re.compile(rf"RAM\s+(\d+)/(\d+){_UNIT}(?:\s*\(lfb\s+(\d+)x(\d+){_UNIT}\))?" + _END)
_SWAP = re.compile(rf"SWAP\s+(\d+)/(\d+){_UNIT}(?:\s*\(cached\s+(\d+){_UNIT}\))?" + _END)
_IRAM = re.compile(rf"IRAM\s+(\d+)/(\d+){_UNIT}(?:\s*\(lfb\s+(\d+){_UNIT}\))?" + _END)
_CPU = re.compile(r"CPU\s+\[([^\]]*)\](?:@(\d+))?" + _END, re.IGNORECASE)
_CORE = re.compile(r"(\d+)%(?:@(\d+))?")
_MTS = re.compile(r"MTS\s+fg\s+(\d+)%\s+bg\s+(\d+)%" + _END)
_RAIL = re.compile(r"([A-Za-z][A-Za-z0-9_]*)\s+(\d+)(?:mW)?((?:/\d+(?:mW)?)+)" + _END)
_CLOCKED = re.compile(
    r"([A-Z][A-Z0-9_]*)\s+(?:(off)|(?:(\d+)%)?@\[(\d+(?:,\d+)*)\]|(\d+)%@(\d+)|(\d+)%|@(\d+)|(\d+))" + _END
)
_TEMP = re.compile(rf"([A-Za-z][A-Za-z0-9_]*)@{_NUM}C((?:/-?\d+(?:\.\d+)?C)*)" + _END)
_TOKEN = re.compile(r"\S+")
_SPACE = re.compile(r"\s*")


def _skip_space(text: str, pos: int) -> int:
    """The first position at or after ``pos`` that is not whitespace."""
    space = _SPACE.match(text, pos)
    assert space is not None  # \s* matches everywhere, if only the empty string
    return space.end()

# Field names that tegrastats spells two ways across releases.
_EMC_NAMES = frozenset({"EMC_FREQ", "EMC"})
_GPU_NAMES = frozenset({"GR3D_FREQ", "GR3D"})


@dataclass
class _Fields:
    """What one line has yielded so far; becomes the Sample at the end."""

    time: datetime | None = None
    ram: Memory | None = None
    swap: Swap | None = None
    iram: Iram | None = None
    cpus: tuple[CpuCore, ...] = ()
    emc: Clocked | None = None
    gpu: Clocked | None = None
    engines: dict[str, Clocked] = field(default_factory=dict)
    temperatures: dict[str, Temperature] = field(default_factory=dict)
    rails: dict[str, Rail] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)


def parse_tegrastats_line(line: str) -> Sample:
    """Parse one tegrastats line into a Sample (source "tegrastats"); unrecognised tokens go to `unknown`."""
    text = line.strip()
    out = _Fields()
    pos = 0
    date = _DATE.match(text)
    if date and _set_date(out, date):
        pos = _skip_space(text, date.end())
    while pos < len(text):
        for pattern, apply in _RULES:
            match = pattern.match(text, pos)
            if match and apply(out, match) is not False:
                break
        else:
            match = _TOKEN.match(text, pos)
            assert match is not None  # \S+ matches: pos is past the spaces and before the end
            out.unknown.append(match.group())
        pos = _skip_space(text, match.end())
    return Sample(
        source="tegrastats",
        time=out.time,
        ram=out.ram,
        swap=out.swap,
        iram=out.iram,
        cpus=out.cpus,
        emc=out.emc,
        gpu=out.gpu,
        engines=out.engines,
        temperatures=out.temperatures,
        rails=out.rails,
        unknown=tuple(out.unknown),
    )


def _set_date(out: _Fields, m: re.Match) -> bool:
    month, day, year, hour, minute, second = (int(g) for g in m.groups())
    try:
        out.time = datetime(year, month, day, hour, minute, second)
    except ValueError:  # "13-45-2020 ..." is not a date; its tokens stay unknown
        return False
    return True


def _kb(value: str, unit: str) -> int:
    return int(value) * _KB[unit]


def _ram(out: _Fields, m: re.Match) -> None:
    used, total, unit, blocks, size, size_unit = m.groups()
    out.ram = Memory(
        used_mb=_kb(used, unit) // 1024,
        total_mb=_kb(total, unit) // 1024,
        lfb_blocks=int(blocks) if blocks else None,
        lfb_block_kb=_kb(size, size_unit) if size else None,
    )


def _swap(out: _Fields, m: re.Match) -> None:
    used, total, unit, cached, cached_unit = m.groups()
    out.swap = Swap(
        used_mb=_kb(used, unit) // 1024,
        total_mb=_kb(total, unit) // 1024,
        cached_mb=_kb(cached, cached_unit) // 1024 if cached else None,
    )


def _iram(out: _Fields, m: re.Match) -> None:
    used, total, unit, lfb, lfb_unit = m.groups()
    out.iram = Iram(
        used_kb=_kb(used, unit), total_kb=_kb(total, unit), lfb_kb=_kb(lfb, lfb_unit) if lfb else None
    )


def _cpus(out: _Fields, m: re.Match) -> bool:
    items, shared_freq = m.groups()
    cores = []
    for item in items.split(",") if items else ():
        if item == "off":
            cores.append(CpuCore(online=False))
            continue
        core = _CORE.fullmatch(item)
        if core is None:  # not a form we know: keep the whole bracket as unknown tokens
            return False
        load, freq = core.groups()
        freq = freq or shared_freq
        cores.append(CpuCore(online=True, load_pct=float(load), freq_mhz=int(freq) if freq else None))
    out.cpus = tuple(cores)
    return True


def _mts(out: _Fields, m: re.Match) -> None:
    out.engines["MTS_FG"] = Clocked(load_pct=float(m.group(1)))
    out.engines["MTS_BG"] = Clocked(load_pct=float(m.group(2)))


def _rail(out: _Fields, m: re.Match) -> None:
    name, current, rest = m.groups()
    figures = [int(figure.removesuffix("mW")) for figure in rest.split("/")[1:]]
    out.rails[name] = Rail(current_mw=int(current), average_mw=figures[0], extra_mw=tuple(figures[1:]))


def _clocked(out: _Fields, m: re.Match) -> None:
    name, off, gpc_load, gpcs, load_f, freq_l, load_only, freq_at, freq_only = m.groups()
    if off:
        unit = Clocked(online=False)
    elif gpcs is not None:
        clocks = tuple(int(f) for f in gpcs.split(","))
        unit = Clocked(load_pct=_pct(gpc_load), freq_mhz=max(clocks), gpc_freq_mhz=clocks)
    elif load_f is not None:
        unit = Clocked(load_pct=float(load_f), freq_mhz=int(freq_l))
    elif load_only is not None:
        unit = Clocked(load_pct=float(load_only))
    else:
        unit = Clocked(freq_mhz=int(freq_at or freq_only))
    if name in _EMC_NAMES:
        out.emc = unit
    elif name in _GPU_NAMES:
        out.gpu = unit
    else:
        out.engines[name.removesuffix("_FREQ")] = unit


def _temperature(out: _Fields, m: re.Match) -> None:
    name, celsius, rest = m.groups()
    extra = tuple(offline_if_impossible(float(f.removesuffix("C"))) for f in rest.split("/")[1:])
    out.temperatures[name] = Temperature(celsius=offline_if_impossible(float(celsius)), extra_c=extra)


def _pct(text: str | None) -> float | None:
    return float(text) if text is not None else None


# Every rule ends on a token boundary, which keeps them disjoint: "RAM 1/2MB" is no rail (MB),
# "GPU 463/463" no clocked unit (the "/"), "GPU@30C" neither. The order only tries frequent fields
# first. A rule returning False declines its match and the next rule is tried.
_RULES: tuple[tuple[re.Pattern, Callable[[_Fields, re.Match], bool | None]], ...] = (
    (_RAM, _ram),
    (_SWAP, _swap),
    (_IRAM, _iram),
    (_CPU, _cpus),
    (_MTS, _mts),
    (_RAIL, _rail),
    (_CLOCKED, _clocked),
    (_TEMP, _temperature),
)
