"""DHP run events: typed records, a JSON-lines log with in-process subscribers, and readers.

One JSON object per line, each with ``type`` and ``t`` (seconds since the run started), e.g.::

    {"type":"chain_link","t":3.125,"chain":7,"batch":6,"stage":1,"from_node":"n2","to_node":"n5"}

Stages are 0-based indices. ``batch`` is the mini-batch id, which is also its iteration index
(``engine.dhp.schedule``). Written by the coordinator, read by the console (live, by tailing the
file or subscribing in-process) and by tests.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from engine.errors import EngineError
from engine.io import LineTail

log = logging.getLogger(__name__)


class EventError(EngineError):
    """An events file line that is not a known event."""


class _Event:
    TYPE: ClassVar[str]
    if TYPE_CHECKING:  # every event is a dataclass (what asdict needs); the mixin itself is not
        __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., "t": ..., fields...}`` with tuples as lists."""
        return {"type": self.TYPE, **asdict(self)}

    def to_json(self) -> str:
        """One compact JSON line (no newline)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))


@dataclass(frozen=True)
class RunStarted(_Event):
    """The run began: its layout and settings."""

    TYPE: ClassVar[str] = "run_started"
    t: float
    mode: str
    """``dynamic`` or ``fixed``."""
    policy: str
    """Next-hop policy (``first_free`` or ``earliest_finish``)."""
    stages: tuple[tuple[str, ...], ...]
    """Node names per stage."""
    iterations: int
    average_every: int
    """Averaging period in iterations (0: never)."""


@dataclass(frozen=True)
class NodeState(_Event):
    """A node changed state."""

    TYPE: ClassVar[str] = "node_state"
    t: float
    node: str
    stage: int
    state: str
    """``idle``, ``busy`` or ``lost``."""


@dataclass(frozen=True)
class ChainLink(_Event):
    """A chain reached a node: ``from_node`` is None on stage 0 (the START)."""

    TYPE: ClassVar[str] = "chain_link"
    t: float
    chain: int
    batch: int
    stage: int
    from_node: str | None
    to_node: str


@dataclass(frozen=True)
class ChainDone(_Event):
    """A chain completed; its links vanish."""

    TYPE: ClassVar[str] = "chain_done"
    t: float
    chain: int
    batch: int
    nodes: tuple[str, ...]
    loss: float
    ms: float
    """Wall time from START to the stage-0 backward done."""
    data_ms: float = 0.0
    """How long stage 1 waited for the chain's mini-batch after START (near 0 when it was built ahead: overlap)."""


@dataclass(frozen=True)
class Iteration(_Event):
    """An iteration completed (one mini-batch forward and back)."""

    TYPE: ClassVar[str] = "iteration"
    t: float
    iteration: int
    batch: int
    loss: float
    ms: float
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Averaging(_Event):
    """Replica averaging began or ended; ``ms`` is its duration on ``done`` (None on ``start``)."""

    TYPE: ClassVar[str] = "averaging"
    t: float
    phase: str
    """``start`` or ``done``."""
    iteration: int
    """Iterations completed when it began."""
    ms: float | None = None
    divergence: tuple[float, ...] | None = None
    """On ``done``: per stage, how far its replicas had drifted apart (``engine.dhp.averaging.divergence``)."""


@dataclass(frozen=True)
class NodeLost(_Event):
    """A node stopped answering or failed; ``requeued`` are the batches handed out again."""

    TYPE: ClassVar[str] = "node_lost"
    t: float
    node: str
    reason: str
    requeued: tuple[int, ...]


@dataclass(frozen=True)
class ChainAborted(_Event):
    """A chain stalled (no report for the chain timeout) and was given up; its batch is handed out again."""

    TYPE: ClassVar[str] = "chain_aborted"
    t: float
    chain: int
    batch: int
    nodes: tuple[str, ...]
    """The nodes it had reached, by stage."""
    reason: str


@dataclass(frozen=True)
class NodeJoined(_Event):
    """A node (re)joined a stage."""

    TYPE: ClassVar[str] = "node_joined"
    t: float
    node: str
    stage: int


@dataclass(frozen=True)
class NodeSummary:
    """One node's share of a run (the columns of paper Tables 5-6)."""

    stage: int
    iterations: int
    mean_ms: float
    """Mean forward + backward of one mini-batch on the node."""


@dataclass(frozen=True)
class RunFinished(_Event):
    """The run ended: completed, or stopped early with ``reason``."""

    TYPE: ClassVar[str] = "run_finished"
    t: float
    iterations: int
    """Iterations completed."""
    seconds: float
    per_node: dict[str, NodeSummary]
    reason: str | None = None
    """Why the run stopped early (a broken fixed chain, a stage without nodes), None when completed."""


Event = (
    RunStarted | NodeState | ChainLink | ChainDone | Iteration | Averaging | NodeLost | ChainAborted | NodeJoined | RunFinished
)
EVENT_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (RunStarted, NodeState, ChainLink, ChainDone, Iteration, Averaging, NodeLost, ChainAborted, NodeJoined,
                RunFinished)
}


def _frozen(value: Any) -> Any:
    """JSON lists back to the tuples the dataclasses hold."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


def event_from_dict(data: Any, where: str = "event") -> Event:
    """Rebuild an event from its ``to_dict``; EventError names ``where`` and the problem."""
    if not isinstance(data, dict):
        raise EventError(f"{where}: not a JSON object")
    kind: Any = data.get("type")  # untrusted JSON: any value; an unknown one is refused below
    cls = EVENT_TYPES.get(kind)
    if cls is None:
        raise EventError(f"{where}: unknown event type {kind!r}")
    names = {f.name for f in fields(cls)}
    required = {f.name for f in fields(cls) if f.default is MISSING}
    values = {k: v for k, v in data.items() if k != "type"}
    missing, unknown = sorted(required - set(values)), sorted(set(values) - names)
    if missing or unknown:
        problem = f"missing {missing}" if missing else f"unknown field(s) {unknown}"
        raise EventError(f"{where}: {kind} event {problem}")
    values = {k: _frozen(v) for k, v in values.items()}
    if cls is RunFinished:
        try:
            values["per_node"] = {node: NodeSummary(**entry) for node, entry in values["per_node"].items()}
        except (AttributeError, TypeError) as exc:
            raise EventError(f"{where}: run_finished per_node is malformed ({exc})") from None
    return cls(**values)


def parse_line(line: str, where: str = "line") -> Event:
    """One JSON line to an event."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise EventError(f"{where}: not JSON ({exc})") from None
    return event_from_dict(data, where)


def read_events(path: str | Path) -> list[Event]:
    """Every event of a finished events file; EventError names the file and line of a bad one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EventError(f"{path}: cannot read events ({exc})") from None
    lines = text.split("\n")
    if lines[-1]:
        raise EventError(f"{path}:{len(lines)}: incomplete last line (is the run still writing?)")
    return [parse_line(line, f"{path}:{number}") for number, line in enumerate(lines[:-1], start=1) if line.strip()]


class EventTail:
    """Follows a growing events file: each ``poll`` returns the events of lines completed since the last."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lines = LineTail(self.path)

    def poll(self) -> list[Event]:
        """New complete events (none while the file does not exist yet); a partial line waits for its end. A file
        started over by a new run is read from its start again."""
        raws = self._lines.poll()
        first = self._lines.lines - len(raws) + 1
        return [parse_line(raw.decode("utf-8"), f"{self.path}:{number}")
                for number, raw in enumerate(raws, start=first) if raw.strip()]


class EventLog:
    """Appends events as JSON lines (one ``write`` per line, unbuffered) and calls in-process subscribers.

    A reader tailing the file sees only whole lines once each write returns. A subscriber that
    raises is logged and does not stop the run or the other subscribers.
    """

    def __init__(self, path: str | Path | None = None, fresh: bool = False) -> None:
        """``fresh`` starts the file over (a new run: its events never follow those of an earlier, stopped run
        in the same file); otherwise events are appended (a resumed run continues its file)."""
        self.path = Path(path) if path is not None else None
        self._file = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb" if fresh else "ab", buffering=0)
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every later event; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def emit(self, event: Event) -> None:
        """Write ``event`` and hand it to the subscribers."""
        if self._file is not None:
            data = (event.to_json() + "\n").encode("utf-8")
            written = 0
            while written < len(data):  # a regular file takes it in one go; loop for the rare short write
                written += os.write(self._file.fileno(), data[written:])
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception("event subscriber %r failed on %s", callback, event.TYPE)

    def close(self) -> None:
        """Close the file (subscribers stay)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
