"""CWB for the console: search a profile's partitions over the fleet's nodes and plan replicas (pure, no UI)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from console.services.backend import NodeInfo
from engine.cwb.fastest import Recommendation
from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.planner import DEFAULT_BANDWIDTH
from engine.cwb.planner import plan_partitions as plan_cwb
from engine.cwb.profile_format import Profile
from engine.cwb.replicas import ReplicaReport
from engine.cwb.search import SearchResult
from engine.cwb.transfer import Network
from engine.cwb.units import parse_bandwidth
from engine.errors import PartitionError


@dataclass(frozen=True)
class PartitionPlan:
    """A profile, the best partitions of it over the fleet, the replica plan of the chosen one and the fastest plan."""

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
    accounting: str = "exact"
    """Memory accounting the plan was made with (``exact`` or ``paper``)."""
    recommendation: Recommendation | None = None
    """The fastest simulated plan and the baselines beside it (None when not searched)."""
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
                    *, bandwidth: str = DEFAULT_BANDWIDTH, top: int = 8, accounting: str = "exact",
                    recommend: bool = True) -> PartitionPlan:
    """CWB search (paper Algorithm 2) of ``profile`` on ``nodes`` (``engine.cwb.planner``), and the fastest plan.

    ``partitions`` None picks the fewest that fit memory, as ``litesrl partition`` does. Raises
    PartitionError (one line, naming what would fit) when nothing fits.
    """
    if not nodes:
        raise PartitionError("no nodes to partition for: the fleet is empty")
    if partitions is not None and partitions > len(nodes):
        raise PartitionError(f"{partitions} partitions need {partitions} nodes; there are {len(nodes)}")
    planned = plan_cwb(profile, pool_of(nodes), Network(bandwidth=parse_bandwidth(bandwidth), latency_ms=0.0),
                       partitions=partitions, accounting=accounting, top=top, recommend=recommend)
    return PartitionPlan(profile, origin, planned.partitions, planned.automatic, planned.result, planned.replicas,
                         accounting, planned.recommendation)
