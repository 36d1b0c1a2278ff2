"""Typed messages: workers report to the app with them, and the app tells the active screen what changed.

Telemetry is the high-rate stream. ``TelemetryArrived`` merges a queued burst into one message
(``can_replace``) so a backlog is drawn once while every reading still reaches the history;
``FleetChanged`` and ``TrainingChanged`` merge the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from console.fleet.ssh import NodeStatus
from console.services.backend import NodeInfo, Reading
from engine.cwb.profile_format import Profile
from engine.dhp.events import Event


@dataclass
class BackendReady(Message):
    """The backend started: these are its nodes."""

    nodes: tuple[NodeInfo, ...]
    """The nodes, in order."""


@dataclass
class BackendFailed(Message):
    """The backend could not start (bad inventory, cluster failed to come up)."""

    reason: str
    """One line saying why."""


@dataclass
class TelemetryArrived(Message):
    """Readings and link states from the backend, oldest first."""

    readings: tuple[Reading, ...] = ()
    """Readings, oldest first."""
    statuses: tuple[NodeStatus, ...] = ()
    """Link states, oldest first."""

    def can_replace(self, message: Message) -> bool:
        # Called on the older message with the next queued one: fold ours into it and let it stand.
        if isinstance(message, TelemetryArrived):
            message.readings = self.readings + message.readings
            message.statuses = self.statuses + message.statuses
            return True
        return False


@dataclass
class FleetChanged(Message, bubble=False):
    """Sent by the app to the active screen: these nodes' views changed."""

    nodes: frozenset[str]
    """Names of the nodes whose state or readings changed."""

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, FleetChanged):
            message.nodes = self.nodes | message.nodes
            return True
        return False


@dataclass
class TrainingEvents(Message):
    """New events of the training run, oldest first."""

    events: tuple[Event, ...]
    """Events in the order the coordinator wrote them."""

    def can_replace(self, message: Message) -> bool:
        if isinstance(message, TrainingEvents):
            message.events = self.events + message.events
            return True
        return False


@dataclass
class TrainingExited(Message):
    """The training process ended."""

    returncode: int | None
    """Its exit status (negative: killed by that signal); for a reattached run, which is not the console's
    child, 0 or 1 as its events tell (completed, stopped early), None when they do not say."""
    detail: str
    """Its last line of error output (a reattached run: why it stopped early), or empty."""
    reattached: bool = False
    """True for a run an earlier console launched (:class:`console.services.training_run.AttachedRun`)."""


@dataclass
class TrainingChanged(Message, bubble=False):
    """Sent by the app to the active screen: the training state changed."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrainingChanged)


@dataclass
class ProfileReady(Message):
    """A profile to show: measured on a node, loaded from a file, or the shipped reference."""

    profile: Profile
    """The profile."""
    origin: str
    """Where it came from, for people (``measured on tx2-1``, a path, ``TX2 reference``)."""
    source: str | None = None
    """What ``litesrl train --profile`` takes to use it (its file, or a board name), when known."""


@dataclass
class ProfileFailed(Message):
    """Profiling or loading a profile failed."""

    reason: str
    """One line saying why."""


@dataclass
class PlanChanged(Message, bubble=False):
    """Sent by the app to the active screen: a new profile is loaded (or profiling started or failed)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PlanChanged)


@dataclass
class LogsChanged(Message, bubble=False):
    """Sent by the app to the active screen: log lines were added."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LogsChanged)


@dataclass
class LogLine(Message):
    """A line for the log screen."""

    text: str
    """The line, plain text."""
    level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error``."""
    source: str = "console"
    """Who said it: ``console``, ``train``, ``profile`` or a node name."""
