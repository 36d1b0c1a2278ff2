"""A stack of labelled horizontal meters (jtop's bars): one line each, sized to the widget's width."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from console.tui.format import bar


@dataclass(frozen=True)
class Gauge:
    """One meter line."""

    label: str
    """Left label, e.g. ``CPU3`` or ``RAM``."""
    fraction: float | None
    """Fill 0..1; None draws an empty (dotted) bar, for an offline unit."""
    text: str
    """Right-hand figures, e.g. ``45% 1420MHz``."""
    style: str = "green"
    """Colour of the filled part."""


class Meters(Widget):
    """Lines of ``LABEL ████····· TEXT``; call :meth:`show` with the gauges to draw."""

    DEFAULT_CSS = """
    Meters { height: auto; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.gauges: tuple[Gauge, ...] = ()

    def show(self, gauges: tuple[Gauge, ...] | list[Gauge]) -> None:
        """Replace the gauges; the widget grows or shrinks to one line per gauge."""
        gauges = tuple(gauges)
        if gauges != self.gauges:
            resize = len(gauges) != len(self.gauges)
            self.gauges = gauges
            self.refresh(layout=resize)

    def get_content_height(self, container, viewport, width: int) -> int:
        return max(1, len(self.gauges))

    def render(self) -> Text:
        if not self.gauges:
            return Text("no data", style="dim")
        width = self.content_size.width
        label_w = max(len(g.label) for g in self.gauges)
        text_w = max(len(g.text) for g in self.gauges)
        bar_w = max(4, width - label_w - text_w - 4)
        out = Text(no_wrap=True, overflow="ellipsis")
        for index, gauge in enumerate(self.gauges):
            if index:
                out.append("\n")
            out.append(gauge.label.ljust(label_w) + " ", style="bold")
            out.append("▕", style="dim")
            out.append_text(bar(gauge.fraction, bar_w, gauge.style))
            out.append("▏", style="dim")
            out.append(" " + gauge.text.rjust(text_w))
        return out
