"""The layer strip: per-layer bars of time (up) and memory (down), coloured by partition, cut points drawn across."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widget import Widget

from console.partition_text import BLOCKS, layer_owners, stage_colour
from engine.cwb.cost import Candidate
from engine.cwb.profile_format import Profile

_LABEL = 7


class LayerStrip(Widget):
    """Draws a profile's layers and, when given, a candidate's stages and cut points."""

    DEFAULT_CSS = """
    LayerStrip { height: 10; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.profile: Profile | None = None
        self.candidate: Candidate | None = None

    def show(self, profile: Profile | None, candidate: Candidate | None) -> None:
        """Draw ``profile`` split as ``candidate`` says (None: one colour, no cuts)."""
        self.profile, self.candidate = profile, candidate
        self.refresh()

    def owners(self) -> list[int]:
        """Stage index of every layer (all 0 without a candidate)."""
        assert self.profile is not None
        return layer_owners(len(self.profile.layers), self.candidate)

    def render(self) -> Text:
        if self.profile is None:
            return Text("no profile: press t for the TX2 reference, o to open a file, p to profile a node", style="dim")
        layers = self.profile.layers
        width, height = self.content_size.width, self.content_size.height
        cell = max(1, min(4, (width - _LABEL) // len(layers)))
        cuts = set(self.candidate.cuts) if self.candidate is not None else set()
        owner = self.owners()
        bar_rows = max(2, height - 2)
        time_rows = max(1, math.ceil(bar_rows * 0.6))
        memory_rows = max(1, bar_rows - time_rows)
        times = [layer.compute_ms for layer in layers]
        memory = [float(layer.state_bytes) for layer in layers]
        out = Text(no_wrap=True, overflow="crop")
        self._bars(out, "time", times, time_rows, cell, owner, cuts, upward=True)
        out.append("layers".ljust(_LABEL), style="bold")
        for index in range(len(layers)):
            colour = stage_colour(owner[index])
            body = cell - 1 if cell > 1 else 1
            out.append("▀" * body, style=colour)
            if cell > 1:
                out.append("┃" if index in cuts else " ", style="bold white" if index in cuts else "")
        out.append("\n")
        self._bars(out, "memory", memory, memory_rows, cell, owner, cuts, upward=False)
        out.append_text(self._legend(owner))
        return out

    def _bars(self, out: Text, label: str, values: list[float], rows: int, cell: int, owner: list[int],
              cuts: set[int], *, upward: bool) -> None:
        top = max(values) or 1.0
        levels = [value / top * rows * 8 for value in values]  # height in eighths of a row
        order = range(rows - 1, -1, -1) if upward else range(rows)
        for line, row in enumerate(order):
            out.append((label if line == 0 else "").ljust(_LABEL), style="bold")
            for index, level in enumerate(levels):
                fill = level - row * 8
                if upward:
                    char = "█" if fill >= 8 else (BLOCKS[max(0, math.ceil(fill))] if fill > 0 else " ")
                else:
                    # Hanging bars grow downward from the strip: full cells, then a top-half cell.
                    char = "█" if fill >= 8 else ("▀" if fill >= 4 else ("▔" if fill > 0 else " "))
                body = cell - 1 if cell > 1 else 1
                out.append(char * body, style=stage_colour(owner[index]))
                if cell > 1:
                    out.append("┊" if index in cuts else " ", style="white")
            out.append("\n")

    def _legend(self, owner: list[int]) -> Text:
        assert self.profile is not None
        legend = Text()
        if self.candidate is None:
            legend.append(f"{len(self.profile.layers)} layers, no partition chosen", style="dim")
            return legend
        names = self.profile.names
        for stage in self.candidate.stages:
            legend.append("■ ", style=stage_colour(stage.index))
            legend.append(f"P{stage.index + 1} ", style="bold")
            legend.append(f"{names[stage.first_layer]}…{names[stage.last_layer]}  ")
        return legend
