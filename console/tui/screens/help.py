"""The help screen: every key binding of the console and of the screen underneath, from the bindings themselves."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

INTRO = (
    "litesrl operator console: the fleet's live telemetry, CWB profiling and partitions, and DHP training "
    "with live chain formation. Ctrl+P opens the command palette (every action, every node)."
)


STATES = (
    "Node states: up: SSH connected and telemetry arriving. stale: connected, but keepalives or telemetry "
    "stopped for a while (the board's telemetry or agent died, or the link hangs); the console reconnects. "
    "timeout / unreachable: no SSH connection (nothing answers, or too slowly). auth failed, host key "
    "unknown / mismatch: the login or the host key was refused (`litesrl nodes trust NAME` for a new board)."
)


def _key(binding: Binding, app) -> str:
    return ", ".join(app.get_key_display(Binding(key.strip(), "")) for key in binding.key.split(","))


def bindings_table(title: str, bindings, app) -> Table:
    """A two-column table of key and description, for the bindings that have a description."""
    table = Table(title=title, title_justify="left", title_style="bold", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for binding in bindings:
        if isinstance(binding, tuple):
            binding = Binding(*binding)
        if binding.description:
            table.add_row(_key(binding, app), binding.description)
    return table


class HelpScreen(ModalScreen[None]):
    """Key bindings of the app and of ``screen``; Escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "app.pop_screen", "Close")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.under = screen

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Help"
            box.border_subtitle = "Esc to close"
            yield Static(Text(INTRO), id="help-intro")
            yield Static(bindings_table("Everywhere", self.app.BINDINGS, self.app), id="help-app")
            name = type(self.under).__name__.removesuffix("Screen") or "This screen"
            yield Static(bindings_table(f"{name} screen", self.under.BINDINGS, self.app), id="help-screen")
            yield Static(Text(STATES), id="help-states")
