"""The training dialog: fixed or dynamic chains, next-hop policy, iterations, averaging period."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from console.tui.training_run import TrainRequest


class TrainDialog(ModalScreen[TrainRequest | None]):
    """Asks for the run's settings; dismisses with a :class:`TrainRequest` or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, request: TrainRequest | None = None) -> None:
        super().__init__()
        self.request = request or TrainRequest()

    def compose(self) -> ComposeResult:
        r = self.request
        with Vertical(classes="dialog") as box:
            box.border_title = "Train Lite-SRL with DHP (paper 3.3.2)"
            with Grid(classes="form"):
                yield Label("chains")
                yield Select([("dynamic (Fig. 4b)", "dynamic"), ("fixed (Fig. 4a)", "fixed")], value=r.mode,
                             id="mode", allow_blank=False)
                yield Label("next hop")
                yield Select([("first free (paper)", "first-free"), ("earliest finish", "earliest-finish")],
                             value=r.policy, id="policy", allow_blank=False)
                yield Label("iterations")
                yield Input(str(r.iterations), id="iterations", type="integer")
                yield Label("average every")
                yield Input(str(r.average_every), id="average", type="integer")
            yield Static(id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("Start", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        try:
            iterations = int(self.query_one("#iterations", Input).value)
            average = int(self.query_one("#average", Input).value)
        except ValueError:
            iterations = average = -1
        if iterations < 1 or average < 0:
            self.query_one("#problem", Static).update("iterations must be ≥ 1 and the averaging period ≥ 0")
            return
        self.dismiss(TrainRequest(mode=self.query_one("#mode", Select).value,
                                  policy=self.query_one("#policy", Select).value,
                                  iterations=iterations, average_every=average))

    def action_cancel(self) -> None:
        """Close without training."""
        self.dismiss(None)
