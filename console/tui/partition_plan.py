"""CWB for the console: search a profile's partitions over the fleet's nodes and plan replicas (pure, no UI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from console.tui.backend import NodeInfo
from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.plan import CostModel
from engine.cwb.profile_format import Profile
from engine.cwb.replicas import ReplicaReport, replicas_for
from engine.cwb.search import SearchResult, infeasible_message, search, smallest_partitions
from engine.cwb.transfer import Network
from engine.cwb.units import parse_bandwidth
from engine.errors import PartitionError

DEFAULT_BANDWIDTH = "1Gbit"
"""Link speed assumed between nodes (the paper's switch), as ``litesrl partition`` assumes."""


@dataclass(frozen=True)
class PartitionPlan:
    """A profile, the best partitions of it over the fleet, and the replica plan of the chosen one."""

    profile: Profile
    """The profile searched."""
    origin: str
    """Where the profile came from, for people."""
    partitions: int
    """Stages searched for."""
    automatic: bool
    """True when ``partitions`` is the fewest that fit memory (not the operator's choice)."""
    result: SearchResult
    """CWB's candidates, best E first."""
    replicas: ReplicaReport | None
    """Replica plan of the best candidate (None when it does not fit memory)."""


@dataclass
class ProfileSlot:
    """The profile the partition screen shows, and any profiling in progress (owned by the app)."""

    profile: Profile | None = None
    """The loaded profile, None before one is loaded."""
    origin: str = ""
    """Where it came from, for people."""
    source: str | None = None
    """What ``litesrl train --profile`` takes to use it: its file, or a reference board's name."""
    running: str | None = None
    """Node being profiled now, None when no profiling runs."""
    started: float = 0.0
    """``time.monotonic()`` when that profiling started."""
    error: str | None = None
    """Why the latest profiling or loading failed, None after a success."""


def pool_of(nodes: Sequence[NodeInfo]) -> tuple[NodeSpec, ...]:
    """The fleet's nodes as the partition search sees them (name, memory budget, speed, board)."""
    return tuple(NodeSpec(node.name, node.memory_budget, node.speed, node.board) for node in nodes)


def plan_partitions(profile: Profile, origin: str, nodes: Sequence[NodeInfo], partitions: int | None = None,
                    *, bandwidth: str = DEFAULT_BANDWIDTH, top: int = 8) -> PartitionPlan:
    """CWB search (paper Algorithm 2) of ``profile`` on ``nodes``, then the replica plan of the best cut.

    ``partitions`` None picks the fewest that fit memory, as ``litesrl partition`` does. Raises
    PartitionError (one line, naming what would fit) when nothing fits.
    """
    if not nodes:
        raise PartitionError("no nodes to partition for: the fleet is empty")
    pool = pool_of(nodes)
    model = CostModel(profile, Network(bandwidth=parse_bandwidth(bandwidth), latency_ms=0.0))
    automatic = partitions is None
    if partitions is None:
        partitions = smallest_partitions(model, pool)
        if partitions is None:
            raise PartitionError(infeasible_message(model, pool, min(len(pool), model.q)))
    if partitions > min(len(pool), model.q):
        raise PartitionError(f"{partitions} partitions need {partitions} nodes and layers; "
                             f"there are {len(pool)} nodes and {model.q} layers")
    result = search(model, pool, partitions, top=top)
    replicas = replicas_for(model, result.best, pool) if result.best.fits else None
    return PartitionPlan(profile, origin, partitions, automatic, result, replicas)
