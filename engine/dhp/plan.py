"""A DHP run plan from CWB: where to cut (Algorithm 2), which nodes serve each stage, and what to expect.

Dynamic chains take CWB's replica plan (e.g. the paper's 3/2/1); fixed chains take ``N // n`` chains
of one node per stage (the paper's two chains of three TX2s), the rest idle. Profile layers and model
units are the same list (``LiteSRL.partitionable_layers``), so a cut after profile layer ``c`` is a
new stage starting at model unit ``c + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.plan import Candidate, CostModel
from engine.cwb.profile_format import Profile
from engine.cwb.replicas import ReplicaReport, replicas_for
from engine.cwb.search import infeasible_message, search, smallest_partitions
from engine.cwb.transfer import Network
from engine.dhp.emulation import StageMemory, stage_memory
from engine.errors import PartitionError
from engine.model import ModelConfig, build_model


@dataclass(frozen=True)
class RunPlan:
    """Stages, their nodes and the predicted time per iteration of one mode."""

    mode: str
    """``dynamic`` or ``fixed``."""
    cuts: tuple[int, ...]
    """Profile layer index each cut follows (CWB's convention)."""
    cut_names: tuple[str, ...]
    """Name of the layer each cut follows."""
    stages: tuple[tuple[str, ...], ...]
    """Node names serving each stage; in fixed mode chain ``j`` is the ``j``-th node of every stage."""
    idle: tuple[str, ...]
    """Nodes the plan leaves out."""
    units: tuple[tuple[int, int], ...]
    """Model units ``[start, end)`` of each stage."""
    memory: tuple[StageMemory, ...]
    """What each stage needs on its node."""
    work_ms: tuple[float, ...]
    """Forward + backward of each stage on the profiled board."""
    cut_ms: tuple[float, ...]
    """Both directions of each cut on the planned network."""
    predicted_ms: float
    """Analytic time per iteration of this mode (``engine.cwb.replicas``), on the profiled board's clock."""
    candidate: Candidate
    replicas: ReplicaReport

    @property
    def model_cuts(self) -> list[int]:
        """Unit indices where stages 2..n start (``engine.dhp.stage.split_model``)."""
        return [cut + 1 for cut in self.cuts]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``, checkpoints and the console."""
        return {
            "mode": self.mode,
            "cuts": list(self.cuts),
            "cut_after": list(self.cut_names),
            "stages": [list(nodes) for nodes in self.stages],
            "idle": list(self.idle),
            "units": [list(u) for u in self.units],
            "memory_bytes": [m.total for m in self.memory],
            "work_ms": list(self.work_ms),
            "cut_ms": list(self.cut_ms),
            "predicted_ms": self.predicted_ms,
            "dynamic_ms": self.replicas.best.iteration_ms,
            "fixed_ms": self.replicas.fixed_iteration_ms,
        }


def check_profile_fits_model(profile: Profile, model: ModelConfig) -> None:
    """Raise PartitionError unless the profile's layers are the model's partitionable units."""
    names = [name for name, _ in build_model(model).partitionable_layers()]
    if list(profile.names) != names:
        raise PartitionError(
            f"the profile ({profile.settings.backbone}, {len(profile.names)} layers) does not describe the model "
            f"({model.backbone} {model.stem} stem, {len(names)} units); profile the model with `litesrl profile`"
        )


def plan_run(
    profile: Profile,
    pool: Sequence[NodeSpec],
    network: Network,
    *,
    mode: str,
    partitions: int | None = None,
    cuts: Sequence[int] | None = None,
    stage_one: Sequence[str] | None = None,
) -> RunPlan:
    """Cut the profiled model for ``pool`` and place the nodes.

    ``cuts`` (profile layer indices) skip the search, e.g. when resuming; otherwise CWB searches
    ``partitions`` stages (default: the fewest that fit the budgets). ``stage_one`` lists the nodes that
    can read the dataset; only they are placed on stage 1 (None: every node can).
    """
    model = CostModel(profile, network)
    if cuts is not None:
        order = _order_for_cuts(model, tuple(cuts), pool)
        candidate = model.evaluate(tuple(cuts), order, "resume")
    else:
        if partitions is None:
            partitions = smallest_partitions(model, pool)
            if partitions is None:
                raise PartitionError(infeasible_message(model, pool, min(len(pool), model.q)))
        if partitions > len(pool):
            raise PartitionError(f"{partitions} partitions need at least {partitions} nodes; the cluster has {len(pool)}")
        candidate = search(model, pool, partitions, top=1).best
    n = len(candidate.stages)
    report = replicas_for(model, candidate, pool)
    work = tuple(model.profile_ms(s.first_layer, s.last_layer + 1) for s in candidate.stages)
    if mode == "dynamic":
        stages = [list(names) for names in report.best.nodes]
        predicted = report.best.iteration_ms
    elif mode == "fixed":
        stages = _fixed_lanes(model, candidate, pool)
        predicted = report.fixed_iteration_ms
    else:
        raise PartitionError(f"unknown mode {mode!r}; choose dynamic or fixed")
    by_name = {node.name: node for node in pool}
    if stage_one is not None:
        _put_data_nodes_first(stages, set(stage_one), by_name)
    used = {name for names in stages for name in names}
    units = tuple((s.first_layer, s.last_layer + 1) for s in candidate.stages)
    return RunPlan(
        mode=mode,
        cuts=candidate.cuts,
        cut_names=candidate.cut_names,
        stages=tuple(tuple(names) for names in stages),
        idle=tuple(node.name for node in pool if node.name not in used),
        units=units,
        memory=tuple(stage_memory(profile, a, b) for a, b in units),
        work_ms=work,
        cut_ms=candidate.cut_transfer_ms,
        predicted_ms=predicted if n > 0 else 0.0,
        candidate=candidate,
        replicas=report,
    )


def _order_for_cuts(model: CostModel, cuts: tuple[int, ...], pool: Sequence[NodeSpec]) -> tuple[NodeSpec, ...]:
    """A chain of distinct nodes that fit the stages of ``cuts`` (for evaluating a given cut)."""
    bounds = (0,) + tuple(c + 1 for c in cuts) + (model.q,)
    order, left = [], list(pool)
    for start, end in zip(bounds, bounds[1:]):
        need = model.memory_bytes(start, end)
        fit = next((node for node in left if node.memory_bytes >= need), None)
        if fit is None:
            raise PartitionError(f"no node left can hold layers {start}..{end - 1} ({need} bytes) of the stored cut")
        order.append(fit)
        left.remove(fit)
    return tuple(order)


def _fixed_lanes(model: CostModel, candidate: Candidate, pool: Sequence[NodeSpec]) -> list[list[str]]:
    """``N // n`` chains: CWB's chain first, then chains of nodes like it (same board) where possible."""
    n = len(candidate.stages)
    by_name = {node.name: node for node in pool}
    first = [by_name[name] for name in candidate.order]
    left = [node for node in pool if node.name not in candidate.order]
    lanes = [first]
    for _ in range(len(pool) // n - 1):
        lane = []
        for stage, model_node in zip(candidate.stages, first):
            need = model.memory_bytes(stage.first_layer, stage.last_layer + 1)
            fits = [node for node in left if node.memory_bytes >= need]
            if not fits:
                break
            same = [node for node in fits if (node.speed, node.memory_bytes) == (model_node.speed, model_node.memory_bytes)]
            pick = (same or fits)[0]
            lane.append(pick)
            left.remove(pick)
        if len(lane) < n:
            break
        lanes.append(lane)
    return [[lane[s].name for lane in lanes] for s in range(n)]


def _put_data_nodes_first(stages: list[list[str]], readers: set[str], pool: Mapping[str, NodeSpec]) -> None:
    """Swap nodes so every stage-1 node can read the dataset (only between interchangeable nodes)."""
    for i, name in enumerate(stages[0]):
        if name in readers:
            continue
        kind = (pool[name].speed, pool[name].memory_bytes)
        swap = next(((s, j) for s in range(1, len(stages)) for j, other in enumerate(stages[s])
                     if other in readers and (pool[other].speed, pool[other].memory_bytes) == kind), None)
        if swap is None:
            raise PartitionError(f"stage 1 reads the dataset but {name} has none and no node like it has one; "
                                 "give it a data path (inventory data_path, or --data)")
        s, j = swap
        stages[0][i], stages[s][j] = stages[s][j], name
