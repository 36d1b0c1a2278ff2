"""The training screen's model: a DHP run rebuilt from its event stream (chains, node activity, loss, faults)."""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from engine.dhp.events import (
    Averaging,
    ChainAborted,
    ChainDone,
    ChainLink,
    Event,
    Iteration,
    NodeJoined,
    NodeLost,
    NodeState,
    RunFinished,
    RunStarted,
)

LOSS_HISTORY = 2000
"""Iterations of loss kept for the curve."""

THROUGHPUT_WINDOW = 20
"""Iterations the recent throughput is measured over."""

NOTES = 50
"""Averaging and fault lines kept."""


@dataclass
class NodeActivity:
    """One node of the run."""

    node: str
    """Node name."""
    stage: int
    """0-based stage the node serves."""
    state: str = "idle"
    """``idle``, ``busy`` or ``lost``."""
    batch: int | None = None
    """Mini-batch the node holds now (set by the chain link that reached it)."""
    chain: int | None = None
    """Chain id of that mini-batch."""
    iterations: int = 0
    """Mini-batches this node completed (chains it was part of that finished)."""


@dataclass(frozen=True)
class Note:
    """A line of the run's notable moments (averaging, faults)."""

    t: float
    """Seconds since the run started."""
    text: str
    """What happened."""
    level: str = "info"
    """``info``, ``warning`` or ``error``."""


@dataclass
class TrainingState:
    """Everything the training screen draws, updated one event at a time by :meth:`apply`."""

    mode: str = ""
    """``fixed`` or ``dynamic``; empty before ``run_started``."""
    policy: str = ""
    """Next-hop policy of dynamic chains."""
    stages: tuple[tuple[str, ...], ...] = ()
    """Node names per stage."""
    total: int = 0
    """Iterations the run was asked for."""
    average_every: int = 0
    """Averaging period (0: never)."""
    nodes: dict[str, NodeActivity] = field(default_factory=dict)
    """Per-node activity."""
    links: dict[int, list[ChainLink]] = field(default_factory=dict)
    """Live chains: chain id -> its hops so far."""
    completed: int = 0
    """Iterations completed."""
    losses: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=LOSS_HISTORY))
    """Loss per completed iteration, oldest first."""
    done_times: collections.deque[float] = field(default_factory=lambda: collections.deque(maxlen=THROUGHPUT_WINDOW))
    """Run times (``t``) of the latest iterations, for the throughput."""
    averaging: bool = False
    """True while replica averaging is in progress."""
    averaging_rounds: int = 0
    """Averaging rounds completed."""
    notes: collections.deque[Note] = field(default_factory=lambda: collections.deque(maxlen=NOTES))
    """Averaging and fault lines, oldest first."""
    t: float = 0.0
    """Run time of the latest event."""
    finished: RunFinished | None = None
    """The final report, once the run ended."""

    @property
    def started(self) -> bool:
        """True once ``run_started`` arrived."""
        return bool(self.stages)

    @property
    def live_links(self) -> list[ChainLink]:
        """Every hop of every chain still forming or running."""
        return [link for hops in self.links.values() for link in hops]

    def throughput(self) -> float | None:
        """Iterations per second over the latest :data:`THROUGHPUT_WINDOW` iterations (None before two)."""
        if len(self.done_times) < 2 or self.done_times[-1] <= self.done_times[0]:
            return None
        return (len(self.done_times) - 1) / (self.done_times[-1] - self.done_times[0])

    def apply(self, event: Event) -> None:
        """Update the state with one event (events must come in the order they were written)."""
        self.t = max(self.t, event.t)
        if isinstance(event, RunStarted):
            self._start(event)
        elif isinstance(event, NodeState):
            activity = self._node(event.node, event.stage)
            activity.state = event.state
            if event.state != "busy":
                activity.batch = activity.chain = None
        elif isinstance(event, ChainLink):
            self.links.setdefault(event.chain, []).append(event)
            activity = self._node(event.to_node, event.stage)
            activity.batch, activity.chain = event.batch, event.chain
        elif isinstance(event, ChainDone):
            self.links.pop(event.chain, None)
            for name in event.nodes:
                if name in self.nodes:
                    self.nodes[name].iterations += 1
        elif isinstance(event, Iteration):
            self.completed += 1
            self.losses.append(event.loss)
            self.done_times.append(event.t)
        elif isinstance(event, Averaging):
            self._averaging(event)
        elif isinstance(event, NodeLost):
            self._lost(event)
        elif isinstance(event, ChainAborted):
            self.links.pop(event.chain, None)
            self.notes.append(Note(event.t, f"chain {event.chain} stalled and was given up: {event.reason}; "
                                             f"batch {event.batch} requeued", "warning"))
        elif isinstance(event, NodeJoined):
            self._node(event.node, event.stage).state = "idle"
            self.notes.append(Note(event.t, f"{event.node} joined stage P{event.stage + 1}"))
        elif isinstance(event, RunFinished):
            self.finished = event
            self.links.clear()
            text = f"finished: {event.iterations} iterations in {event.seconds:.1f} s"
            self.notes.append(Note(event.t, text if event.reason is None else f"stopped: {event.reason}",
                                   "info" if event.reason is None else "error"))

    def _start(self, event: RunStarted) -> None:
        fresh = TrainingState()
        self.__dict__.update(fresh.__dict__)
        self.mode, self.policy, self.total, self.average_every = event.mode, event.policy, event.iterations, event.average_every
        self.stages = event.stages
        self.t = event.t
        for stage, names in enumerate(event.stages):
            for name in names:
                self.nodes[name] = NodeActivity(name, stage)

    def _node(self, name: str, stage: int) -> NodeActivity:
        activity = self.nodes.get(name)
        if activity is None:
            activity = self.nodes[name] = NodeActivity(name, stage)
        activity.stage = stage
        return activity

    def _averaging(self, event: Averaging) -> None:
        self.averaging = event.phase == "start"
        if event.phase == "done":
            self.averaging_rounds += 1
            took = f" in {event.ms:.0f} ms" if event.ms is not None else ""
            self.notes.append(Note(event.t, f"replicas averaged at iteration {event.iteration}{took}"))

    def _lost(self, event: NodeLost) -> None:
        activity = self.nodes.get(event.node)
        if activity is not None:
            activity.state, activity.batch, activity.chain = "lost", None, None
        for chain, hops in list(self.links.items()):
            if any(event.node in (hop.from_node, hop.to_node) for hop in hops):
                del self.links[chain]
        requeued = f"; requeued batch(es) {', '.join(map(str, event.requeued))}" if event.requeued else ""
        self.notes.append(Note(event.t, f"{event.node} lost: {event.reason}{requeued}", "error"))
