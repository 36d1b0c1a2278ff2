"""A DHP run plan from CWB: where to cut (Algorithm 2), which nodes serve each stage, and what to expect.

Dynamic chains take CWB's replica plan (e.g. the paper's 3/2/1); fixed chains take ``N // n`` chains
of one node per stage (the paper's two chains of three TX2s), the rest idle. Profile layers and model
units are the same list (``LiteSRL.partitionable_layers``), so a cut after profile layer ``c`` is a
new stage starting at model unit ``c + 1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.cwb.cost import Candidate, CostModel
from engine.cwb.fastest import fixed_lanes
from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.planner import DEFAULT_ACCOUNTING, DEFAULT_OBJECTIVE, plan_partitions
from engine.cwb.profile_format import Profile
from engine.cwb.replicas import ReplicaPlan, ReplicaReport, replicas_for
from engine.cwb.transfer import Network
from engine.cwb.units import format_bytes
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
    accounting: str = DEFAULT_ACCOUNTING,
    objective: str = DEFAULT_OBJECTIVE,
    replicas: Sequence[int] | None = None,
) -> RunPlan:
    """Cut the profiled model for ``pool`` and place the nodes.

    ``cuts`` (profile layer indices) skip the search, e.g. when resuming or running a recommended
    plan; otherwise CWB searches ``partitions`` stages (default: the fewest that fit the budgets).
    ``replicas`` (nodes per stage, dynamic mode) replaces the analytic best replica plan.
    ``stage_one`` lists the nodes that can read the dataset; only they are placed on stage 1 (None:
    every node can). ``accounting`` and ``objective`` are CWB's (``engine.cwb.cost``).
    """
    if mode not in ("dynamic", "fixed"):
        raise PartitionError(f"unknown mode {mode!r}; choose one of dynamic, fixed")
    if cuts is not None:
        model = CostModel(profile, network, accounting=accounting, objective=objective)
        order = _order_for_cuts(model, tuple(cuts), pool)
        candidate = model.evaluate(tuple(cuts), order, "resume")
    else:
        if partitions is not None and partitions > len(pool):
            raise PartitionError(f"{partitions} partitions need at least {partitions} nodes; the cluster has {len(pool)}")
        planned = plan_partitions(profile, pool, network, partitions=partitions, accounting=accounting,
                                  objective=objective, top=1)
        model, candidate = planned.model, planned.best
    n = len(candidate.stages)
    report = replicas_for(model, candidate, pool)
    work = tuple(model.profile_ms(s.first_layer, s.last_layer + 1) for s in candidate.stages)
    if mode == "dynamic":
        chosen = report.best if replicas is None else _with_replicas(report, tuple(replicas))
        stages = [list(names) for names in chosen.nodes]
        predicted = chosen.iteration_ms
    else:
        by_name = {node.name: node for node in pool}
        stages = fixed_lanes(model, candidate.cuts, pool, [by_name[name] for name in candidate.order])
        predicted = report.fixed_iteration_ms
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
        memory=tuple(_stage_memory(model, a, b) for a, b in units),
        work_ms=work,
        cut_ms=candidate.cut_transfer_ms,
        predicted_ms=predicted if n > 0 else 0.0,
        candidate=candidate,
        replicas=report,
    )


def _stage_memory(model: CostModel, start: int, end: int) -> StageMemory:
    """What a stage needs in the plan's accounting (the node checks it against its budget)."""
    exact = stage_memory(model.profile, start, end)
    if model.accounting == "exact":
        return exact
    held = exact.weights + exact.gradients + exact.optimizer
    return StageMemory(exact.weights, exact.gradients, exact.optimizer, model.memory_bytes(start, end) - held, 0)


def _with_replicas(report: ReplicaReport, replicas: tuple[int, ...]) -> ReplicaPlan:
    """The fastest listed plan with ``replicas`` nodes per stage; PartitionError naming the fastest ones otherwise."""
    if len(replicas) != len(report.best.replicas):
        raise PartitionError(f"--replicas gives {len(replicas)} stages but the plan has {len(report.best.replicas)}")
    for plan in report.plans:
        if plan.replicas == replicas:
            return plan
    offered = ", ".join(dict.fromkeys("/".join(map(str, plan.replicas)) for plan in report.plans[:5]))
    raise PartitionError(f"no assignment of these nodes serves the stages {'/'.join(map(str, replicas))} "
                         f"(memory or node count); the fastest are {offered}")


def _order_for_cuts(model: CostModel, cuts: tuple[int, ...], pool: Sequence[NodeSpec]) -> tuple[NodeSpec, ...]:
    """A chain of distinct nodes that fit the stages of ``cuts``; PartitionError saying which stage is over and by how much."""
    bounds = (0,) + tuple(c + 1 for c in cuts) + (model.q,)
    order, left = [], list(pool)
    for index, (start, end) in enumerate(zip(bounds, bounds[1:])):
        need = model.memory_bytes(start, end)
        fit = next((node for node in sorted(left, key=lambda n: n.memory_bytes) if node.memory_bytes >= need), None)
        if fit is None:
            largest = max((node.memory_bytes for node in left), default=0)
            names = model.profile.names
            raise PartitionError(
                f"stage {index + 1} ({names[start]} .. {names[end - 1]}) needs {format_bytes(need)} "
                f"({model.accounting} accounting) but the largest free node has {format_bytes(largest)}: "
                f"{format_bytes(need - largest)} over; cut elsewhere or give the nodes more memory"
            )
        order.append(fit)
        left.remove(fit)
    return tuple(order)


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
