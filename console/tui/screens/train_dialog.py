"""The training dialog: fixed or dynamic chains, next-hop policy, iterations, averaging period, and the CWB profile.

The profile choices: the cluster's default, each profile measured on a board, the one loaded with ``o``
(or ``p``), each shipped reference board, or a file named here.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Select, Static

from console.services.training_run import TrainRequest

DEFAULT = "default"
"""The profile choice that leaves ``--profile`` out (the cluster's own default)."""

FILE = "file"
"""The profile choice that takes the path typed in the dialog."""


def profile_choices(measured: dict[str, Path], loaded: tuple[str, str] | None,
                    boards: list[str]) -> list[tuple[str, str]]:
    """``(label, value)`` options of the profile select; a value is what ``litesrl train --profile`` takes.

    ``measured``: node -> kept profile file; ``loaded``: (origin, file or board) of the profile loaded
    in the console, if any; ``boards``: the shipped reference boards.
    """
    options = [("cluster default", DEFAULT)]
    options += [(f"measured on {node}", str(path)) for node, path in measured.items()]
    if loaded is not None and loaded[1] not in {value for _, value in options}:
        options.append((f"loaded: {loaded[0]}", loaded[1]))
    options += [(f"reference {board}", board) for board in boards]
    return options + [("a file…", FILE)]


class TrainDialog(ModalScreen[TrainRequest | None]):
    """Asks for the run's settings; dismisses with a :class:`TrainRequest` or None."""

    BINDINGS = [Binding("ctrl+s", "submit", "Start"), Binding("escape", "cancel", "Cancel")]
    """Enter opens a select, so the form has its own submit key (shown in the footer); Enter in a text field starts too."""

    def __init__(self, request: TrainRequest | None = None, profiles: list[tuple[str, str]] | None = None,
                 chosen: str = DEFAULT) -> None:
        super().__init__()
        self.request = request or TrainRequest()
        self.profiles = profiles or [("cluster default", DEFAULT)]
        self.chosen = chosen if chosen in {value for _, value in self.profiles} else DEFAULT

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
                yield Label("profile")
                yield Select(self.profiles, value=self.chosen, id="profile", allow_blank=False)
                yield Label("profile file")
                yield Input(placeholder="path of a litesrl-profile .json (with 'a file…')", id="profile-file")
            yield Static(id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="ok")
                yield Button("Cancel (esc)", id="cancel")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        else:
            self.action_submit()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        """Start with the form's settings, or say what is wrong with them."""
        try:
            iterations = int(self.query_one("#iterations", Input).value)
            average = int(self.query_one("#average", Input).value)
        except ValueError:
            iterations = average = -1
        if iterations < 1 or average < 0:
            self.query_one("#problem", Static).update("iterations must be ≥ 1 and the averaging period ≥ 0")
            return
        profile = self.query_one("#profile", Select).value
        if profile == FILE:
            path = Path(self.query_one("#profile-file", Input).value.strip()).expanduser()
            if not path.is_file():
                self.query_one("#problem", Static).update(f"no profile file {path}")
                return
            profile = str(path)
        self.dismiss(TrainRequest(mode=self.query_one("#mode", Select).value,
                                  policy=self.query_one("#policy", Select).value,
                                  iterations=iterations, average_every=average,
                                  profile=None if profile == DEFAULT else str(profile)))

    def action_cancel(self) -> None:
        """Close without training."""
        self.dismiss(None)
