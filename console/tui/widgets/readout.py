"""A text widget that redraws only when its text changes (a Static update costs a layout pass)."""

from __future__ import annotations

from rich.console import RenderableType
from textual.widgets import Static


class Readout(Static):
    """Static text for figures refreshed every second; :meth:`show` skips unchanged text."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.shown: RenderableType | None = None

    def show(self, content: RenderableType) -> None:
        """Display ``content`` unless it equals what is displayed."""
        if content != self.shown:
            self.shown = content
            self.update(content)
