"""Live chain formation (paper Fig. 4): a column of node boxes per stage, a line per hop of every live chain.

A hop appears when the coordinator links a mini-batch from a stage-``s`` node to a stage-``s+1``
node and vanishes when that chain completes; each chain has its own colour. Boxes show the node's
state (busy, idle, lost), the batch it holds and how many mini-batches it completed.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

from console.partition_text import stage_colour
from console.services.training_state import NodeActivity, TrainingState

CHAIN_COLOURS = ("bright_cyan", "bright_magenta", "bright_yellow", "bright_green", "bright_blue", "bright_red",
                 "cyan", "magenta", "yellow", "green")
"""Colour of chain ``id % len``: hops of one mini-batch share it."""

GAP = 7
"""Columns between two stages, where the links run."""

_STATE = {"busy": ("●", "bold green"), "idle": ("○", "dim"), "lost": ("✖", "bold red")}


class _Canvas:
    """A grid of characters with a style each, turned into Text at the end."""

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.cells = [[(" ", "")] * width for _ in range(height)]

    def put(self, x: int, y: int, text: str, style: str = "") -> None:
        for offset, char in enumerate(text):
            if 0 <= y < self.height and 0 <= x + offset < self.width:
                self.cells[y][x + offset] = (char, style)

    def text(self) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        for index, row in enumerate(self.cells):
            if index:
                out.append("\n")
            for char, style in row:
                out.append(char, style=style)
        return out


class ChainBoard(Widget):
    """Draws a :class:`TrainingState`; call :meth:`show` after the state changed."""

    DEFAULT_CSS = """
    ChainBoard { height: auto; min-height: 3; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.state: TrainingState | None = None
        self.compact = False

    def show(self, state: TrainingState) -> None:
        """Redraw from ``state`` (its stages fix the layout)."""
        self.state = state
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        if self.state is None or not self.state.stages:
            return 1
        tallest = max(len(names) for names in self.state.stages)
        self.compact = 1 + 3 * tallest > max(viewport.height - 12, 8)
        return 1 + (tallest if self.compact else 3 * tallest)

    def box_rows(self) -> dict[str, int]:
        """Row of each node's content line (where its links attach)."""
        assert self.state is not None
        rows = {}
        for names in self.state.stages:
            for position, name in enumerate(names):
                rows[name] = 1 + (position if self.compact else 3 * position + 1)
        return rows

    def render(self) -> Text:
        state = self.state
        if state is None or not state.stages:
            return Text("no training run: press s to start one", style="dim")
        width = self.content_size.width
        stages = len(state.stages)
        box = max(12, min(24, (width - GAP * (stages - 1)) // stages))
        canvas = _Canvas(max(width, 1), max(1, self.content_size.height))
        rows = self.box_rows()
        left = {}
        for stage, names in enumerate(state.stages):
            x = stage * (box + GAP)
            busy = sum(1 for name in names if state.nodes.get(name) and state.nodes[name].state == "busy")
            canvas.put(x, 0, f"P{stage + 1} {busy}/{len(names)} busy"[:box], f"bold {stage_colour(stage)}")
            for name in names:
                left[name] = x
                activity = state.nodes.get(name) or NodeActivity(name, stage)
                self._box(canvas, x, rows[name], box, activity)
        for link in state.live_links:
            colour = CHAIN_COLOURS[link.chain % len(CHAIN_COLOURS)]
            if link.from_node is None:
                if link.to_node in left and left[link.to_node] > 0:
                    canvas.put(left[link.to_node] - 1, rows[link.to_node], "▶", colour)
                continue
            if link.from_node in left and link.to_node in left:
                self._link(canvas, left[link.from_node] + box, left[link.to_node], rows[link.from_node],
                           rows[link.to_node], link.chain, colour)
        return canvas.text()

    def _box(self, canvas: _Canvas, x: int, row: int, box: int, activity: NodeActivity) -> None:
        symbol, style = _STATE.get(activity.state, ("?", ""))
        border = {"busy": "green", "lost": "red"}.get(activity.state, "bright_black")
        batch = f"b{activity.batch}" if activity.batch is not None else ""
        count = f"{activity.iterations} it"
        inner = box - 2
        if self.compact:
            label = f"{symbol} {activity.node}"
            body = label[: inner - len(count) - 1].ljust(inner - len(count)) + count
            canvas.put(x, row, "[" + body[:inner] + "]", style if activity.state != "idle" else "")
            return
        title = f" {activity.node} "[: inner]
        top = "╭" + title + "─" * (inner - len(title) - len(batch) - (1 if batch else 0)) + (batch + "─" if batch else "") + "╮"
        canvas.put(x, row - 1, top[:box], border)
        if batch:
            colour = CHAIN_COLOURS[(activity.chain or 0) % len(CHAIN_COLOURS)]
            canvas.put(x + box - 2 - len(batch), row - 1, batch, "bold " + colour)
        state = f"{symbol} {activity.state}"
        canvas.put(x, row, "│", border)
        canvas.put(x + 1, row, state.ljust(inner - len(count))[: inner - len(count)], style)
        canvas.put(x + 1 + inner - len(count), row, count[:inner], "bold")
        canvas.put(x + box - 1, row, "│", border)
        canvas.put(x, row + 1, "╰" + "─" * inner + "╯", border)

    def _link(self, canvas: _Canvas, x0: int, x1: int, y0: int, y1: int, chain: int, colour: str) -> None:
        # Each chain bends in its own column of the gap, so simultaneous hops stay apart.
        mid = x0 + 1 + chain % max(1, x1 - x0 - 3)
        style = f"bold {colour}"
        canvas.put(x0, y0, "─" * (mid - x0), style)
        if y1 == y0:
            canvas.put(mid, y0, "─", style)
        else:
            down = y1 > y0
            canvas.put(mid, y0, "╮" if down else "╯", style)
            for y in range(min(y0, y1) + 1, max(y0, y1)):
                canvas.put(mid, y, "│", style)
            canvas.put(mid, y1, "╰" if down else "╭", style)
        canvas.put(mid + 1, y1, "─" * (x1 - mid - 2), style)
        canvas.put(x1 - 1, y1, "▶", style)
