"""The one-line bar at the top of every screen: the cluster, the screens (current one lit), fleet and run status."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

SECTIONS = (("fleet", "1", "Fleet"), ("profile", "2", "Partition"), ("training", "3", "Training"), ("logs", "4", "Logs"))
"""(mode, key, label) of the console's top-level screens, in key order."""


class TopBar(Widget):
    """Draws the app's :attr:`status_line` for the mode the screen belongs to."""

    DEFAULT_CSS = """
    TopBar { height: 1; dock: top; background: $panel; }
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def on_mount(self) -> None:
        self.watch(self.app, "status_line", lambda _value: self.refresh(), init=False)

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(" litesrl ", style="bold reverse")
        for mode, key, label in SECTIONS:
            lit = mode == self.mode
            out.append(f" {key}", style="bold" if lit else "dim")
            out.append(f" {label} ", style="bold reverse" if lit else "")
        out.append("  ")
        out.append(getattr(self.app, "status_line", ""), style="")
        return out
