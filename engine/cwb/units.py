"""Human units for CWB settings: sizes (`3GB`, `512MiB`), bandwidths (`1Gbit`, `125MB/s`), durations (`2.5ms`).

Conventions, stated once because people mix them up:

* ``B`` is a byte and ``bit`` (or ``bps``) a bit; a bare ``b`` is refused as ambiguous.
* SI prefixes are powers of 1000 (``3GB`` = 3e9 bytes), IEC prefixes powers of 1024 (``512MiB``).
* Prefix letters are accepted in either case (``1gbit`` as ``tc`` writes it, ``1Gbit``).
* A bandwidth may end in ``/s`` (``125MB/s``); it is returned in bytes per second.
"""

from __future__ import annotations

import re

from engine.errors import ConfigError

_NUMBER = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ/]*)\s*$")
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IEC = {"ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_DURATION_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0}


def _split(text: object, what: str, example: str) -> tuple[float, str]:
    match = _NUMBER.match(str(text))
    if match is None:
        raise ConfigError(f"{what} {text!r} is not a number with a unit, e.g. {example}")
    return float(match.group(1)), match.group(2)


def _byte_or_bit_factor(unit: str, what: str, text: str, example: str) -> tuple[float, bool]:
    """Return (multiplier, is_bits) for a unit such as ``GB``, ``MiB``, ``Gbit`` or ``Mbps``."""
    for suffix, bits in (("bits", True), ("bit", True), ("bps", True), ("B", False)):
        if unit.endswith(suffix):
            prefix = unit[: -len(suffix)].lower()
            if suffix == "B" and prefix in _IEC:
                return float(_IEC[prefix]), False
            if prefix in _SI:
                return float(_SI[prefix]), bits
            break
    if unit.endswith("b"):
        raise ConfigError(
            f"{what} {text!r}: unit {unit!r} is ambiguous, write bits as 'bit' (e.g. 1Gbit) "
            f"or bytes as 'B' (e.g. 125MB)"
        )
    raise ConfigError(f"{what} {text!r}: unknown unit {unit!r}, e.g. {example}")


def parse_size(text: str | int | float) -> int:
    """Bytes in ``text`` (``3GB``, ``512MiB``, ``7599.7MB``, or a bare number of bytes).

    Raises ConfigError for a missing number, an unknown or bit unit, or a negative size.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value, unit = float(text), ""
    else:
        value, unit = _split(text, "size", "3GB or 512MiB")
    if unit == "":
        return int(round(value))
    factor, bits = _byte_or_bit_factor(unit, "size", str(text), "3GB or 512MiB")
    if bits:
        raise ConfigError(f"size {text!r} is in bits; give memory in bytes, e.g. 3GB or 512MiB")
    return int(round(value * factor))


def parse_bandwidth(text: str | int | float) -> float:
    """Bytes per second in ``text`` (``1Gbit``, ``100Mbit/s``, ``100Mbps``, ``125MB/s``).

    A bare number is refused: bits or bytes must be said. Raises ConfigError, also for zero.
    """
    example = "1Gbit, 100Mbit/s or 125MB/s"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        raise ConfigError(f"bandwidth {text!r} needs a unit, e.g. {example}")
    value, unit = _split(text, "bandwidth", example)
    if unit.endswith("/s"):
        unit = unit[:-2]
    if unit == "":
        raise ConfigError(f"bandwidth {text!r} needs a unit, e.g. {example}")
    factor, bits = _byte_or_bit_factor(unit, "bandwidth", str(text), example)
    rate = value * factor / (8.0 if bits else 1.0)
    if rate <= 0:
        raise ConfigError(f"bandwidth {text!r} must be greater than zero")
    return rate


def parse_duration_ms(text: str | int | float) -> float:
    """Milliseconds in ``text`` (``2.5ms``, ``250us``, ``1s``, ``15min``, ``1h``); a bare number is refused."""
    example = "0.2ms, 1s or 15min"
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        raise ConfigError(f"duration {text!r} needs a unit, e.g. {example}")
    value, unit = _split(text, "duration", example)
    if unit not in _DURATION_MS:
        what = "needs a unit" if unit == "" else f"has unknown unit {unit!r}"
        raise ConfigError(f"duration {text!r} {what}, e.g. {example}")
    return value * _DURATION_MS[unit]


def format_bytes(nbytes: float) -> str:
    """``3.00 GB``-style text (SI, as the parser reads it back)."""
    for unit, factor in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(nbytes) >= factor:
            return f"{nbytes / factor:.2f} {unit}"
    return f"{nbytes:.0f} B"


def format_bandwidth(bytes_per_s: float) -> str:
    """``1 Gbit/s``-style text for a rate in bytes per second."""
    bits = bytes_per_s * 8
    for unit, factor in (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bits >= factor:
            return f"{bits / factor:g} {unit}"
    return f"{bits:g} bit/s"
