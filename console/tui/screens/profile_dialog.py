"""The profiling dialog: which node to profile and with which settings (``litesrl profile`` options)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from console.services.backend import ProfileRequest

BACKBONES = ("resnet18", "resnet34", "resnet50")


@dataclass(frozen=True)
class ProfileChoice:
    """The dialog's answer."""

    node: str
    """Node to profile on."""
    request: ProfileRequest
    """Profiling settings."""


class ProfileDialog(ModalScreen[ProfileChoice | None]):
    """Asks for node, backbone, batch and image size; dismisses with a :class:`ProfileChoice` or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, nodes: list[str], node: str | None) -> None:
        super().__init__()
        self.nodes = nodes
        self.node = node if node in nodes else (nodes[0] if nodes else None)

    def compose(self) -> ComposeResult:
        defaults = ProfileRequest()
        with Vertical(classes="dialog") as box:
            box.border_title = "Profile a node (CWB, paper 3.3.1)"
            with Grid(classes="form"):
                yield Label("node")
                yield Select([(name, name) for name in self.nodes], value=self.node or Select.BLANK, id="node",
                             allow_blank=False if self.nodes else True)
                yield Label("backbone")
                yield Select([(b, b) for b in BACKBONES], value=defaults.backbone, id="backbone", allow_blank=False)
                yield Label("batch size")
                yield Input(str(defaults.batch_size), id="batch", type="integer")
                yield Label("image size")
                yield Input(str(defaults.image_size), id="size", type="integer")
            yield Static("Times are measured on the node itself; the paper used batch 64 at 224 px on a TX2.",
                         classes="hint")
            yield Static(id="problem", classes="problem")
            with Horizontal(classes="buttons"):
                yield Button("Profile", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
            return
        node = self.query_one("#node", Select).value
        try:
            batch = int(self.query_one("#batch", Input).value)
            size = int(self.query_one("#size", Input).value)
        except ValueError:
            batch = size = 0
        if node is Select.BLANK or batch < 1 or size < 32:
            self.query_one("#problem", Static).update("choose a node; batch size ≥ 1 and image size ≥ 32")
            return
        backbone = str(self.query_one("#backbone", Select).value)
        self.dismiss(ProfileChoice(str(node), ProfileRequest(backbone=backbone, batch_size=batch, image_size=size)))

    def action_cancel(self) -> None:
        """Close without profiling."""
        self.dismiss(None)
