"""The stable JSON form of a telemetry Sample, the shape that travels from a node to the console.

Version 1 (``"version": 1``). Keys are the dataclass field names of `nodes.telemetry.sample`;
every unit is in the key (``_mb``, ``_kb``, ``_mhz``, ``_pct``, ``_mw``, ``celsius``)::

    {"version": 1, "source": "tegrastats" | "jtop" | "psutil",
     "time": "2025-07-21T16:33:42" | "2025-07-21T16:33:42+02:00" | null,
     "ram":  {"used_mb": int, "total_mb": int, "lfb_blocks": int|null, "lfb_block_kb": int|null} | null,
     "swap": {"used_mb": int, "total_mb": int, "cached_mb": int|null} | null,
     "iram": {"used_kb": int, "total_kb": int, "lfb_kb": int|null} | null,
     "cpus": [{"online": bool, "load_pct": float|null, "freq_mhz": int|null}, ...],
     "emc" | "gpu": {"online": bool, "load_pct": float|null, "freq_mhz": int|null,
                     "gpc_freq_mhz": [int, ...]} | null,
     "engines": {"APE": <same as gpu>, ...},
     "temperatures": {"cpu": {"celsius": float|null, "extra_c": [float|null, ...]}, ...},
     "rails": {"VDD_IN": {"current_mw": int, "average_mw": int|null, "extra_mw": [int, ...]}, ...},
     "unknown": [str, ...],
     "derived": {"cpu_pct", "gpu_pct", "ram_pct", "max_temp_c", "power_mw", "power_from"}}

``derived`` carries the Sample's convenience figures for readers that do not rebuild a Sample
(dashboards, jq); `sample_from_json` ignores it and recomputes them. Readers ignore keys they
do not know, so later versions may add keys without breaking version-1 readers.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from nodes.errors import TelemetryError
from nodes.telemetry.sample import Sample

JSON_VERSION = 1


def sample_to_json(sample: Sample) -> dict:
    """The JSON-ready dict of ``sample`` (only str, int, float, bool, None, list and dict inside)."""
    out: dict[str, Any] = {"version": JSON_VERSION}
    out.update(_encode(sample))
    out["derived"] = {
        "cpu_pct": sample.cpu_percent,
        "gpu_pct": sample.gpu_percent,
        "ram_pct": sample.ram_percent,
        "max_temp_c": sample.max_temp_c,
        "power_mw": sample.total_power_mw,
        "power_from": sample.power_from,
    }
    return out


def sample_from_json(data: object) -> Sample:
    """Rebuild a Sample from `sample_to_json` output; raises TelemetryError naming the bad field."""
    if not isinstance(data, Mapping):
        raise TelemetryError(f"telemetry JSON must be an object, got {type(data).__name__}")
    version = data.get("version")
    if version != JSON_VERSION:
        raise TelemetryError(f"unsupported telemetry JSON version {version!r} (this reader knows {JSON_VERSION})")
    return _decode(Sample, data, "sample")


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(key): _encode(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    return value


def _decode(tp: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert it (lists to tuples, strings to datetimes)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [option for option in options if option is not type(None)]
        return _decode(inner, value, where)
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise TelemetryError(f"{where}: expected one of {typing.get_args(tp)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise TelemetryError(f"{where}: expected a list, got {_kind(value)}")
        item_type = typing.get_args(tp)[0]
        return tuple(_decode(item_type, item, f"{where}[{index}]") for index, item in enumerate(value))
    if origin is Mapping:
        if not isinstance(value, Mapping):
            raise TelemetryError(f"{where}: expected an object, got {_kind(value)}")
        item_type = typing.get_args(tp)[1]
        return {str(key): _decode(item_type, item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, where)
    return _decode_scalar(tp, value, where)


def _decode_dataclass(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise TelemetryError(f"{where}: expected an object, got {_kind(value)}")
    kwargs = {}
    for name, tp, required in _fields(cls):
        if name in value:
            kwargs[name] = _decode(tp, value[name], f"{where}.{name}")
        elif required:
            raise TelemetryError(f"{where}: missing key {name!r}")
    return cls(**kwargs)


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved annotation, required) per field; cached because resolving string annotations is slow."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, hints[f.name], f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


def _decode_scalar(tp: Any, value: Any, where: str) -> Any:
    # bool is an int in Python: JSON true must not pass for a count, nor 1 for a flag.
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and is_number and isinstance(value, int):
        return value
    if tp is float and is_number:
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    if tp is datetime and isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise TelemetryError(f"{where}: {value!r} is not an ISO 8601 time") from None
    raise TelemetryError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {_kind(value)} {value!r}")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
