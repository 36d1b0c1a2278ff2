"""The log screen: what the console, the fleet, profiling and training said, newest at the bottom."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, RichLog

from console.tui.messages import LogsChanged
from console.tui.widgets.top_bar import TopBar

LEVEL_STYLES = {"debug": "dim", "info": "", "warning": "yellow", "error": "bold red"}
"""How each log level is drawn."""


class LogsScreen(Screen):
    """A scrolling log fed from the app's log buffer."""

    BINDINGS = [Binding("c", "clear", "Clear")]

    def __init__(self) -> None:
        super().__init__()
        self.shown = 0

    def compose(self) -> ComposeResult:
        yield TopBar("logs")
        yield RichLog(id="log", max_lines=5000, wrap=True, markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sync()

    def on_screen_resume(self) -> None:
        self.sync()

    def on_logs_changed(self, _message: LogsChanged) -> None:
        self.sync()

    def sync(self) -> None:
        """Write the lines added to the app's buffer since the last sync."""
        log = self.query_one(RichLog)
        lines = self.app.log_lines
        start = max(0, len(lines) - (self.app.log_count - self.shown))
        for line in list(lines)[start:]:
            text = Text(f"{line.source:>8} ", style="dim")
            text.append(line.text, style=LEVEL_STYLES.get(line.level, ""))
            log.write(text)
        self.shown = self.app.log_count

    def action_clear(self) -> None:
        """Clear the view (the buffer keeps its lines for later)."""
        self.query_one(RichLog).clear()
