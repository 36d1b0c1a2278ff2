"""The dialog a console start shows when an earlier console died and left its cluster or training run running:
reuse them (take over), stop them, or leave them alone."""

from __future__ import annotations

from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from console.services.leftovers import Leftovers

Choice = Literal["reuse", "stop"]
"""What the operator chose; None (Escape) leaves the leftovers running untouched."""


class LeftoversDialog(ModalScreen[Choice | None]):
    """Lists the leftovers; dismisses with ``reuse``, ``stop`` or None (leave them)."""

    BINDINGS = [
        Binding("r", "choose('reuse')", "Reuse"),
        Binding("x", "choose('stop')", "Stop them"),
        Binding("escape", "choose(None)", "Leave them"),
    ]

    def __init__(self, leftovers: Leftovers) -> None:
        super().__init__()
        self.leftovers = leftovers

    def compose(self) -> ComposeResult:
        taken = ["follows the run (x stops it)"] if self.leftovers.runs else []
        if self.leftovers.cluster_complete:
            taken.append("uses the cluster")
        elif self.leftovers.cluster is not None:
            taken.append("leaves the cluster, which lost agents, to be replaced as usual")
        with Vertical(classes="dialog") as box:
            box.border_title = "An earlier console left these running"
            yield Static("\n".join(f"• {line}" for line in self.leftovers.lines()), id="leftovers")
            yield Static(f"r reuse: this console takes them over: it {' and '.join(taken)}; what it takes over stops "
                         "when it exits.\nx stop: stop them (a run checkpoints first), then start as usual.\n"
                         "Esc leave: keep them running untouched.", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Reuse (r)", variant="primary", id="reuse")
                yield Button("Stop (x)", variant="error", id="stop")
                yield Button("Leave (Esc)", id="leave")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "leave" else event.button.id)

    def action_choose(self, choice: Choice | None) -> None:
        """Close with ``choice``."""
        self.dismiss(choice)
