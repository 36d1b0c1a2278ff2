"""A history chart drawn with braille dots (2 x 4 per cell), with its title, scale and latest value."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

# Bit of each braille dot, indexed [column][row] with row 0 at the top (Unicode braille patterns).
_DOTS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def braille_rows(values: Sequence[float | None], width: int, height: int, low: float, high: float) -> list[str]:
    """``height`` lines of ``width`` braille cells plotting the last ``2 * width`` values as a line.

    Values are scaled from ``[low, high]`` to the dot rows; consecutive points are joined
    vertically so steep changes stay connected; None leaves a gap.
    """
    points = list(values)[-2 * width:]
    offset = 2 * width - len(points)  # right-align: the newest value is at the right edge
    rows = 4 * height
    span = high - low if high > low else 1.0
    cells = [[0] * width for _ in range(height)]
    previous: int | None = None
    for index, value in enumerate(points):
        if value is None or math.isnan(value):
            previous = None
            continue
        level = round((min(max(value, low), high) - low) / span * (rows - 1))
        y = rows - 1 - level
        top, bottom = (y, y) if previous is None else (min(y, previous), max(y, previous))
        x = offset + index
        for dot_row in range(top, bottom + 1):
            cells[dot_row // 4][x // 2] |= _DOTS[x % 2][dot_row % 4]
        previous = y
    return ["".join(chr(0x2800 + bits) if bits else " " for bits in row) for row in cells]


class LineChart(Widget):
    """A titled chart of a series: set :attr:`values` via :meth:`plot`; ``top`` fixes the scale (e.g. 100 %)."""

    DEFAULT_CSS = """
    LineChart { height: 4; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, title: str, unit: str = "", *, top: float | None = None, colour: str = "cyan",
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.unit = unit
        self.top = top
        self.colour = colour
        self.values: tuple[float | None, ...] = ()

    def plot(self, values: Sequence[float | None]) -> None:
        """Draw ``values`` (oldest first); only the newest that fit are shown."""
        values = tuple(values)
        if values != self.values:
            self.values = values
            self.refresh()

    def _fmt(self, value: float | None) -> str:
        if value is None:
            return "—"
        return f"{value:.3g}{self.unit}" if abs(value) < 100 else f"{value:.0f}{self.unit}"

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        known = [v for v in self.values if v is not None]
        latest = next((v for v in reversed(self.values) if v is not None), None)
        if self.top is not None:
            low, high = 0.0, self.top
        elif known and max(known) > min(known):
            low, high = min(known), max(known)
        else:  # flat or empty: centre the line
            middle = known[0] if known else 0.0
            low, high = middle - 1.0, middle + 1.0
        header = Text(no_wrap=True, overflow="ellipsis")
        header.append(self.title, style="bold")
        header.append(f"  {self._fmt(latest)}", style=self.colour)
        header.append(f"  max {self._fmt(max(known) if known else None)}", style="dim")
        if height <= 1:
            return header
        lines = braille_rows(self.values, max(1, width), height - 1, low, high)
        out = header
        for line in lines:
            out.append("\n")
            out.append(line, style=self.colour)
        return out
