"""How a CWB partition reads as text, the same in `litesrl partition` and the console: stage colours, layer owners, E."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.cwb.cost import Candidate

STAGE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta")
"""Rich colour of partition P1, P2, ... (the CLI's strip and tables, the console's layer strip, tables and chain board)."""

BLOCKS = " ▁▂▃▄▅▆▇█"
"""Eighth-height blocks, empty first: a sparkline cell per value (``BLOCKS[8]`` is a full cell); the layer strips
here and the console's telemetry sparklines (``console.tui.format.spark``) draw with them."""


def stage_colour(index: int) -> str:
    """Colour of the 0-based stage ``index`` (colours repeat after eight stages)."""
    return STAGE_COLOURS[index % len(STAGE_COLOURS)]


def layer_owners(layer_count: int, candidate: Candidate | None) -> list[int]:
    """The 0-based stage of each of ``layer_count`` layers under ``candidate`` (all 0 without one)."""
    owner = [0] * layer_count
    if candidate is not None:
        for stage in candidate.stages:
            for layer in range(stage.first_layer, stage.last_layer + 1):
                owner[layer] = stage.index
    return owner


def e_text(candidate: Candidate) -> str:
    """The equipment-utilisation index E with two decimals, ∞ for a perfectly balanced chain."""
    value = candidate.utilisation_index
    return "∞" if math.isinf(value) else f"{value:.2f}"
