"""The open-profile dialog: a path to a ``litesrl-profile`` JSON file."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static


class OpenProfileDialog(ModalScreen[Path | None]):
    """Asks for a profile path; dismisses with the path (not yet validated) or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Open a CWB profile"
            yield Input(placeholder="path/to/profile.json", id="path")
            yield Static("A file written by `litesrl profile --out`; shipped ones are in assets/profiles/.",
                         classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Open", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._answer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self._answer()

    def _answer(self) -> None:
        text = self.query_one("#path", Input).value.strip()
        self.dismiss(Path(text).expanduser() if text else None)

    def action_cancel(self) -> None:
        """Close without opening."""
        self.dismiss(None)
