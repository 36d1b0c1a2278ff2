"""The fleet screen: one row per node with its link state, board, load, memory, temperature, power and history."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer

from console.fleet.ssh import LinkState
from console.services.store import NodeView
from console.tui import format as fmt
from console.tui.messages import FleetChanged
from console.tui.widgets.line_chart import LineChart
from console.tui.widgets.readout import Readout
from console.tui.widgets.top_bar import TopBar

COLUMNS = (("node", "node", 0), ("state", "state", 13), ("board", "board", 9), ("cpu", " CPU", 4),
           ("gpu", " GPU", 4), ("ram", "RAM", 8), ("temp", "temp", 5), ("power", "power", 5),
           ("history", "history", 0))
"""(key, header, width) of the columns, left to right; 0: the node column fits the longest name, the
history column takes the rest of the screen."""

MIN_HISTORY = 8
"""Narrowest history sparkline."""

SHORT_STATES = {LinkState.HOST_KEY_UNKNOWN: "key unknown", LinkState.HOST_KEY_MISMATCH: "key changed"}
"""Words that fit the state column; the full reason shows below the table."""

STATE_MARKS = {
    LinkState.UP: ("●", "bold green"),
    LinkState.STALE: ("◌", "bold yellow"),
    LinkState.TIMEOUT: ("✖", "bold red"),
    LinkState.UNREACHABLE: ("✖", "bold red"),
    LinkState.AUTH_FAILED: ("⚿", "bold red"),
    LinkState.HOST_KEY_UNKNOWN: ("?", "bold yellow"),
    LinkState.HOST_KEY_MISMATCH: ("!", "bold red"),
}
"""Symbol and colour of each link state."""


def state_cell(view: NodeView, now: float, stale_after: float) -> Text:
    """The state column: a coloured mark and word; stale shows the reading's age."""
    state = view.state(now, stale_after)
    mark, style = STATE_MARKS[state]
    word = SHORT_STATES.get(state, state.value)
    if state is LinkState.STALE:
        age = view.age(now)
        word = f"stale {age:.0f}s" if age is not None else "stale"
    elif state is LinkState.UP and view.latest is None:
        word, style = "waiting", "yellow"
    return Text(f"{mark} {word}", style=style)


def row_cells(view: NodeView, now: float, stale_after: float, history: int) -> list[Text | str]:
    """Every cell of a node's row, in :data:`COLUMNS` order; figures of a node that is not fresh are dimmed."""
    state = view.state(now, stale_after)
    dim = "" if state is LinkState.UP else "dim"
    reading = view.latest
    cells: list[Text | str] = [Text(view.info.name, style="bold"), state_cell(view, now, stale_after),
                               Text(view.info.board, style="dim")]
    if reading is None:
        return cells + [Text(fmt.DASH, style="dim")] * 5 + [""]
    cpu, gpu = view.figure_of(reading, "cpu"), view.figure_of(reading, "gpu")
    temp, power = view.figure_of(reading, "temp"), view.figure_of(reading, "power")
    memory = view.memory_mb()
    ram = fmt.DASH if memory is None else fmt.used_of(memory[0], memory[1])
    cells += [
        Text(fmt.pct(cpu).rjust(4), style=dim or fmt.load_style(cpu)),
        Text(fmt.pct(gpu).rjust(4), style=dim or fmt.load_style(gpu)),
        Text(ram, style=dim or fmt.load_style(view.figure_of(reading, "ram"))),
        Text(fmt.DASH if temp is None else f"{temp:.0f}°C".rjust(5), style=dim or fmt.temp_style(temp)),
        Text(fmt.DASH if power is None else f"{power / 1000:.1f}W".rjust(5), style=dim),
        Text(fmt.spark(view.figure("cpu"), history, top=100.0), style=dim or "cyan"),
    ]
    return cells


class FleetScreen(Screen):
    """Every node at a glance; Enter opens the node's live telemetry."""

    BINDINGS = [
        Binding("enter", "open_node", "Node detail", priority=False),
        Binding("p", "profile_node", "Profile node"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._history = 0
        self._shown: dict[str, list[Text | str]] = {}
        """Cells on screen per node: only cells that differ are updated (each update re-renders the table)."""

    def compose(self) -> ComposeResult:
        yield TopBar("fleet")
        yield Readout(id="fleet-summary")
        yield DataTable(id="fleet-table", cursor_type="row", zebra_stripes=True)
        yield Readout(id="fleet-reason")
        with Horizontal(id="fleet-preview", classes="panel"):
            yield LineChart("CPU", "%", top=100.0, colour="green", id="preview-cpu")
            yield LineChart("GPU", "%", top=100.0, colour="magenta", id="preview-gpu")
            yield LineChart("max temp", "°C", colour="red", id="preview-temp")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw()

    def on_fleet_changed(self, message: FleetChanged) -> None:
        self.redraw(message.nodes)

    def redraw(self, names: frozenset[str] | None = None) -> None:
        """Update the rows of ``names`` (None: every node), adding or removing rows to match the store."""
        app = self.app
        table = self.query_one(DataTable)
        now, stale = time.monotonic(), app.settings.stale_seconds
        views = app.fleet.views()
        wanted = [view.info.name for view in views]
        history = self._history_width(wanted)
        if [str(key.value) for key in table.rows] != wanted or history != self._history:
            # Fixed widths keep the layout still while figures change (and spare a width pass per update).
            self._history = history
            table.clear(columns=True)
            for key, header, width in COLUMNS:
                if key == "node":
                    width = max([4, *map(len, wanted)])
                table.add_column(header, key=key, width=width or history)
            self._shown = {view.info.name: row_cells(view, now, stale, history) for view in views}
            for name, cells in self._shown.items():
                table.add_row(*cells, key=name)
        else:
            for view in views:
                name = view.info.name
                if names is None or name in names:
                    cells, shown = row_cells(view, now, stale, history), self._shown[name]
                    for index, ((key, _header, _width), cell) in enumerate(zip(COLUMNS, cells)):
                        if cell != shown[index]:
                            table.update_cell(name, key, cell)
                            shown[index] = cell
        up = app.fleet.count_up(now, stale)
        summary = Text()
        summary.append(f" {app.backend.title}", style="bold")
        summary.append(f"   {up}/{len(views)} up", style="green" if views and up == len(views) else "yellow")
        if any(view.latest is not None and view.latest.agent is not None for view in views):
            summary.append("   CPU and RAM are each agent's own (RAM against its memory budget)", style="dim")
        self.query_one("#fleet-summary", Readout).show(summary)
        self._show_reason()

    def _history_width(self, names: list[str]) -> int:
        # Each column has one cell of padding on both sides; the scrollbar may take two more.
        fixed = sum(width for key, _h, width in COLUMNS if key != "node") + max([4, *map(len, names)])
        return max(MIN_HISTORY, self.size.width - fixed - 2 * len(COLUMNS) - 2)

    def on_resize(self) -> None:
        self.redraw()

    def _show_reason(self) -> None:
        """Below the table: why the selected node is not up, and its recent history."""
        view = self.selected()
        reason = ""
        if view is not None and view.status.state is not LinkState.UP:
            reason = f"{view.info.name}: {view.status.state.value}: {view.status.reason}"
        self.query_one("#fleet-reason", Readout).show(Text(reason, style="yellow"))
        preview = self.query_one("#fleet-preview")
        preview.border_title = view.info.name if view is not None else ""
        for figure in ("cpu", "gpu", "temp"):
            self.query_one(f"#preview-{figure}", LineChart).plot(view.figure(figure) if view is not None else ())

    def on_data_table_row_highlighted(self, _event: DataTable.RowHighlighted) -> None:
        self._show_reason()

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_open_node()

    def selected(self) -> NodeView | None:
        """The node under the cursor, None for an empty table."""
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return self.app.fleet.get(str(key.value))

    def action_open_node(self) -> None:
        """Open the live telemetry of the node under the cursor."""
        view = self.selected()
        if view is not None:
            self.app.open_node(view.info.name)

    def action_profile_node(self) -> None:
        """Go to the partition screen and profile the node under the cursor."""
        view = self.selected()
        if view is not None:
            self.app.profile_node(view.info.name)
