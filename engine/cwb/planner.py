"""The one CWB planner entry for the CLI, the console and DHP runs: how many partitions, where to cut, which replicas.

``plan_partitions`` does what every caller used to repeat: build the cost model (memory
accounting, objective), take the fewest partitions that fit when none is given, search the cut
with the best E (Algorithm 2) and plan the replicas of that cut. ``engine.cwb.fastest`` adds the
fastest predicted plan on top (``recommend=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.cwb.cost import Candidate, CostModel
from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.profile_format import Profile
from engine.cwb.replicas import ReplicaReport, replicas_for
from engine.cwb.search import SearchResult, infeasible_message, search, smallest_partitions
from engine.cwb.transfer import Network
from engine.errors import PartitionError

DEFAULT_BANDWIDTH = "1Gbit"
"""Link speed assumed between boards when nothing else is said (the paper's switch)."""
DEFAULT_ACCOUNTING = "exact"
"""Memory accounting when nothing else is said (``engine.cwb.cost.ACCOUNTINGS``)."""
DEFAULT_OBJECTIVE = "paper"
"""E's shares when nothing else is said (``engine.cwb.cost.OBJECTIVES``)."""


@dataclass(frozen=True)
class Planned:
    """A searched partition and its replica plan; ``recommendation`` when the fastest plan was asked for."""

    model: CostModel
    """The cost model everything was scored with."""
    partitions: int
    """Stages searched for."""
    automatic: bool
    """True when ``partitions`` is the fewest that fit memory (not the caller's choice)."""
    result: SearchResult
    """CWB's candidates, best E first."""
    replicas: ReplicaReport | None
    """Replica plan of the best-E candidate (None when it does not fit memory)."""
    recommendation: object | None = None
    """``engine.cwb.fastest.Recommendation`` when asked for, else None."""

    @property
    def best(self) -> Candidate:
        """The best-E candidate (the paper's choice)."""
        return self.result.best


def fewest_partitions(model: CostModel, pool: Sequence[NodeSpec], *, reorder: bool = True) -> int:
    """The fewest partitions that fit the pool's memory; PartitionError naming what would fit when none does."""
    if not pool:
        raise PartitionError("no nodes to partition for")
    partitions = smallest_partitions(model, pool, reorder=reorder)
    if partitions is None:
        raise PartitionError(infeasible_message(model, pool, min(len(pool), model.q), reorder=reorder))
    return partitions


def plan_partitions(
    profile: Profile,
    pool: Sequence[NodeSpec],
    network: Network,
    *,
    partitions: int | None = None,
    accounting: str = DEFAULT_ACCOUNTING,
    objective: str = DEFAULT_OBJECTIVE,
    reorder: bool = True,
    top: int = 10,
    recommend: bool = False,
    iterations: int | None = None,
) -> Planned:
    """Search ``profile`` over ``pool`` (Algorithm 2) and plan replicas; with ``recommend``, the fastest plan too.

    ``partitions`` None takes the fewest that fit. Raises PartitionError (one line, naming the
    budget or count that would fit) when nothing fits, ProfileError for a profile the accounting
    cannot use.
    """
    pool = tuple(pool)
    model = CostModel(profile, network, accounting=accounting, objective=objective)
    automatic = partitions is None
    if partitions is None:
        partitions = fewest_partitions(model, pool, reorder=reorder)
    result = search(model, pool, partitions, top=top, reorder=reorder)
    replicas = replicas_for(model, result.best, pool) if result.best.fits else None
    recommendation = None
    if recommend:
        from engine.cwb.fastest import recommend as fastest  # the simulator is only needed here

        recommendation = fastest(model, pool, partitions, best_e=result.best, iterations=iterations)
    return Planned(model, partitions, automatic, result, replicas, recommendation)
