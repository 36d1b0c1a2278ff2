"""Short text forms of telemetry figures and tiny text charts (sparklines, bars) shared by the screens."""

from __future__ import annotations

import math
from collections.abc import Iterable

from rich.text import Text

from console.partition_text import BLOCKS

DASH = "—"
"""What a figure shows when its source does not report it."""


def pct(value: float | None, digits: int = 0) -> str:
    """``42%`` or the dash."""
    return DASH if value is None else f"{value:.{digits}f}%"


def celsius(value: float | None) -> str:
    """``51.5°C`` or the dash."""
    return DASH if value is None else f"{value:.1f}°C"


def watts(milliwatts: float | None) -> str:
    """Power in watts with one decimal (``4.2 W``) or the dash."""
    return DASH if milliwatts is None else f"{milliwatts / 1000:.1f} W"


def megabytes(mb: float | None) -> str:
    """``812M`` below a gigabyte, ``2.9G`` above, or the dash (binary units, as Jetson memory)."""
    if mb is None:
        return DASH
    return f"{mb / 1024:.1f}G" if mb >= 1024 else f"{mb:.0f}M"


def used_of(used_mb: float, total_mb: float) -> str:
    """``3.0/7.7G`` (one unit, the total's) or ``812/900M``."""
    if total_mb >= 1024:
        return f"{used_mb / 1024:.1f}/{total_mb / 1024:.1f}G"
    return f"{used_mb:.0f}/{total_mb:.0f}M"


def mhz(value: int | None) -> str:
    """``1420MHz`` or the dash."""
    return DASH if value is None else f"{value}MHz"


def ms(value: float | None) -> str:
    """``812 ms`` / ``3.1 s`` or the dash."""
    if value is None:
        return DASH
    return f"{value / 1000:.1f} s" if value >= 10_000 else f"{value:.0f} ms"


def spark(values: Iterable[float | None], width: int, top: float | None = None) -> str:
    """The last ``width`` values as a block sparkline; gaps (None) show blank, ``top`` fixes the scale."""
    tail = list(values)[-width:]
    known = [v for v in tail if v is not None]
    scale = top if top is not None else (max(known) if known else 0.0)
    cells = []
    for value in tail:
        if value is None:
            cells.append(" ")
        elif scale <= 0:
            cells.append(BLOCKS[1])
        else:
            cells.append(BLOCKS[max(1, min(8, math.ceil(value / scale * 8)))])
    return "".join(cells).rjust(width)


def bar(fraction: float | None, width: int, style: str, empty_style: str = "dim") -> Text:
    """A horizontal bar ``width`` cells wide filled to ``fraction`` (0..1) in eighths."""
    text = Text()
    if fraction is None:
        return text.append("·" * width, style=empty_style)
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    text.append("█" * full, style=style)
    if rest:
        text.append(" ▏▎▍▌▋▊▉"[rest], style=style)
    text.append("·" * (width - full - (1 if rest else 0)), style=empty_style)
    return text


def load_style(percent: float | None) -> str:
    """Green when light, yellow when busy, red when saturated (jtop's convention)."""
    if percent is None:
        return "dim"
    if percent >= 90:
        return "red"
    return "yellow" if percent >= 60 else "green"


def temp_style(value: float | None) -> str:
    """Colour of a temperature: Jetsons throttle from about 85 °C."""
    if value is None:
        return "dim"
    if value >= 85:
        return "bold red"
    return "yellow" if value >= 70 else "green"
