"""The training screen: launch fixed or dynamic DHP training and watch chains form live, with loss and faults."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from console.services.training_state import TrainingState
from console.tui import format as fmt
from console.tui.messages import TrainingChanged
from console.tui.widgets.chain_board import ChainBoard
from console.tui.widgets.line_chart import LineChart
from console.tui.widgets.readout import Readout
from console.tui.widgets.top_bar import TopBar

NOTE_STYLES = {"error": "red", "warning": "yellow"}
"""Colour of a run note by its level."""


def run_header(state: TrainingState, process: str) -> Text:
    """Two lines: what runs and how far it is; throughput, averaging and the process state."""
    out = Text()
    if not state.started:
        out.append(f" {process or 'no run yet'}", style="dim")
        return out
    policy = f" ({state.policy.replace('_', ' ')})" if state.mode == "dynamic" else ""
    out.append(f" {state.mode} chains{policy}", style="bold")
    layout = "/".join(str(len(names)) for names in state.stages)
    out.append(f" · {layout} · ")
    out.append(f"{state.completed}/{state.total}", style="bold")
    out.append(f" it · {state.t:.0f} s")
    if state.losses:
        out.append(f" · loss {state.losses[-1]:.4f}")
    out.append("\n ")
    rate = state.throughput()
    if rate is not None:
        out.append(f"{rate:.2f} it/s ({fmt.ms(1000 / rate)}/it)", style="cyan")
    else:
        out.append("measuring…", style="dim")
    busy = sum(1 for activity in state.nodes.values() if activity.state == "busy")
    out.append(f" · {busy}/{len(state.nodes)} busy · {len(state.links)} chains")
    if state.average_every:
        out.append(f" · averaged {state.averaging_rounds}× (every {state.average_every})")
    if state.averaging:
        out.append(" · AVERAGING", style="bold magenta")
    lost = [name for name, activity in state.nodes.items() if activity.state == "lost"]
    if lost:
        out.append(f" · lost: {', '.join(lost)}", style="bold red")
    if process and not process.startswith("running"):  # the top bar says a run is on; here only what ended it
        out.append(f" · {process}", style="red" if "fail" in process else "yellow")
    return out


class TrainingScreen(Screen):
    """Draws the app's training state; ``s`` starts a run, ``x`` stops it."""

    BINDINGS = [
        Binding("s", "start", "Start training"),
        Binding("x", "stop", "Stop training"),
    ]

    def compose(self) -> ComposeResult:
        yield TopBar("training")
        yield Readout(id="run-header")
        with VerticalScroll(id="board-scroll"):
            yield ChainBoard(id="chain-board")
        with Horizontal(id="run-bottom"):
            yield LineChart("loss", colour="yellow", id="loss-chart")
            yield Readout(id="run-notes")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw()

    def on_training_changed(self, _message: TrainingChanged) -> None:
        self.redraw()

    def redraw(self) -> None:
        """Draw the board, header, loss curve and notes from the app's training state."""
        state: TrainingState = self.app.training
        self.query_one("#run-header", Readout).show(run_header(state, self.app.training_process))
        self.query_one(ChainBoard).show(state)
        self.query_one("#loss-chart", LineChart).plot(list(state.losses))
        notes = Text()
        for note in list(state.notes)[-8:]:
            notes.append(f"{note.t:6.1f}s ", style="dim")
            notes.append(note.text + "\n", style=NOTE_STYLES.get(note.level, ""))
        self.query_one("#run-notes", Readout).show(notes if state.notes else Text("averaging and faults show here", style="dim"))

    def action_start(self) -> None:
        """Ask for the run's settings and launch it."""
        self.app.ask_training()

    def action_stop(self) -> None:
        """Stop the run in progress."""
        self.app.stop_training()
