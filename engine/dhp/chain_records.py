"""What the chain scheduler (``engine.dhp.schedule``) hands its caller: chains started, hops granted,
chains completed or aborted. Plain frozen records, so the coordinator and the simulator share them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Start:
    """Start ``batch`` (iteration ``iteration``) as chain ``chain`` on the stage-0 node ``node``."""

    chain: int
    node: str
    batch: int
    iteration: int


@dataclass(frozen=True)
class Hop:
    """Chain ``chain`` continues from ``from_node`` to ``to_node`` of stage ``stage`` (now held by it)."""

    chain: int
    stage: int
    from_node: str
    to_node: str
    batch: int
    iteration: int


@dataclass(frozen=True)
class ChainRecord:
    """A chain's mini-batch and the nodes it reached, by stage: a snapshot, a completed or an aborted chain."""

    chain: int
    batch: int
    iteration: int
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class Completed(ChainRecord):
    """A chain whose stage-0 backward is done: one completed iteration."""


@dataclass(frozen=True)
class Freed:
    """What a ``backward_done`` caused: waiting hops it unblocked and, on stage 0, the completed chain."""

    hops: tuple[Hop, ...] = ()
    done: Completed | None = None


@dataclass(frozen=True)
class Loss:
    """What ``node_lost`` caused."""

    node: str
    aborted: tuple[ChainRecord, ...]
    """Chains the lost node held (at most one)."""
    requeued: tuple[int, ...]
    """Their batches, to be handed out again before new ones."""
    freed: tuple[str, ...]
    """Other members of the aborted chains that are now free (they should discard the batch)."""
    hops: tuple[Hop, ...]
    """Waiting hops the freed nodes now serve."""
    fatal: str | None
    """Why the run cannot continue (a broken fixed chain, a stage without nodes), or None."""


@dataclass(frozen=True)
class Aborted:
    """What ``abort`` (a stalled chain given up) caused."""

    chain: ChainRecord
    freed: tuple[str, ...]
    """The nodes it held, now free (they should discard the batch)."""
    hops: tuple[Hop, ...]
    """Waiting hops the freed nodes now serve."""
