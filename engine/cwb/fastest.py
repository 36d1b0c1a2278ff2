"""The fastest plan (beyond the paper): cut x replica allocation x chain mode x next-hop policy, scored by the simulator.

E (Algorithm 2) ranks cuts by balance; what an operator wants is the shortest time per iteration
of the whole cluster. This module searches the plans a DHP run can take and scores each with the
discrete-event simulator (``engine.dhp.simulate``, the same scheduler code as the runtime):

1. **Cuts**: every cut set into ``partitions`` stages whose stages each fit some node of the pool
   (memory balancing, as in the paper).
2. **Analytic screen**: for each cut, the hold-time model of ``engine.cwb.replicas`` with the pool
   seen as ``N`` boards of its mean speed (water-filling, linear in boards and stages) gives a
   dynamic-chain and a fixed-chain estimate; the best ``SCREEN`` cuts by either get the real replica
   plan over the actual boards (per kind), and the best ``shortlist`` of those go on.
3. **Simulation**: each shortlisted cut is simulated with fixed chains (``N // n`` lanes) and with
   dynamic chains for its best replica plans under both next-hop policies (``first_free``, the
   paper's, and ``earliest_finish``); so are the baselines.
4. **Baselines**, each with its best replica plan, fixed and dynamic: the paper's plan (the
   best-E cut), PipeDream's DP cut and torchgpipe's balance-by-time cut.

The recommendation is the fitting plan with the least simulated time per iteration; since the
baselines are simulated on the same footing and compete, it is never slower than a fitting one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.cwb import baselines
from engine.cwb.cost import Candidate, CostModel
from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.replicas import ReplicaPlan, ReplicaReport, plan_replicas
from engine.dhp.policy import POLICIES, Policy
from engine.dhp.schedule import Mode
from engine.dhp.simulate import SimConfig, simulate, stage_times_from_profile
from engine.errors import ConfigError, PartitionError

SHORTLIST = 3
"""Cuts (by the analytic screen) that are simulated, besides the baselines' cuts."""
REPLICA_PLANS = 2
"""Best analytic replica plans simulated per shortlisted cut in dynamic mode."""
MAX_CUT_SETS = 20_000
"""Most fitting cut sets the analytic screen looks at."""


SCREEN = 12
"""Cuts the mean-speed screen passes on to the per-kind replica planner."""


def default_iterations(pool_size: int) -> int:
    """Simulated iterations per plan: enough for the chains to reach their steady state (~5 per node)."""
    return max(60, 5 * pool_size)


@dataclass(frozen=True)
class PlanOption:
    """One runnable plan and its simulated time per iteration."""

    method: str
    """``recommended``, ``paper``, ``pipedream`` or ``gpipe`` (whose cut it is)."""
    cuts: tuple[int, ...]
    cut_names: tuple[str, ...]
    mode: str
    """``fixed`` or ``dynamic`` chains."""
    policy: str
    """Next-hop policy (``first_free`` or ``earliest_finish``; fixed chains do not choose)."""
    stages: tuple[tuple[str, ...], ...]
    """Node names per stage (in fixed mode chain ``j`` is the ``j``-th node of every stage)."""
    fits: bool
    """Every stage fits the memory of every node serving it."""
    predicted_iteration_ms: float | None
    """Simulated wall time per iteration on the profiled boards' clock; None when it cannot run."""
    analytic_ms: float | None = None
    """The hold-time model's estimate (``engine.cwb.replicas``), for comparison."""

    @property
    def replicas(self) -> tuple[int, ...]:
        """Nodes per stage."""
        return tuple(len(names) for names in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "method": self.method, "cut_after": list(self.cut_names), "cuts": list(self.cuts),
            "replicas": list(self.replicas), "mode": self.mode, "policy": self.policy,
            "nodes": [list(names) for names in self.stages], "fits": self.fits,
            "predicted_iteration_ms": self.predicted_iteration_ms, "analytic_ms": self.analytic_ms,
        }


@dataclass(frozen=True)
class Recommendation:
    """The fastest fitting plan, the baselines beside it, and how much was searched."""

    recommended: PlanOption
    baselines: tuple[PlanOption, ...]
    cut_sets: int
    """Fitting cut sets screened analytically."""
    simulated: int
    """Plans simulated."""
    iterations: int
    """Iterations per simulated plan."""

    def to_dict(self) -> dict[str, Any]:
        """``recommended`` and ``baselines`` as ``litesrl partition --json`` prints them."""
        return {
            "recommended": self.recommended.to_dict(),
            "baselines": [option.to_dict() for option in self.baselines],
            "search": {"cut_sets": self.cut_sets, "simulated": self.simulated, "iterations": self.iterations},
        }


def fitting_cut_sets(model: CostModel, pool: Sequence[NodeSpec], partitions: int) -> list[tuple[int, ...]]:
    """Every cut set into ``partitions`` stages whose every stage fits the pool's largest budget."""
    budget = max(node.memory_bytes for node in pool)
    q = model.q
    found: list[tuple[int, ...]] = []

    def visit(k: int, start: int, cuts: tuple[int, ...]) -> None:
        first_end = q if k == partitions - 1 else start + 1
        for end in range(first_end, q - (partitions - 1 - k) + 1):
            if model.state_bytes(start, end) > budget:
                break
            if model.memory_bytes(start, end) > budget:
                continue
            tail = cuts + ((start - 1,) if k > 0 else ())
            if k + 1 < partitions:
                visit(k + 1, end, tail)
            elif len(found) < MAX_CUT_SETS:
                found.append(tail)

    visit(0, 0, ())
    return found


def _bounds(model: CostModel, cuts: Sequence[int]) -> list[tuple[int, int]]:
    edges = [0, *(c + 1 for c in cuts), model.q]
    return list(zip(edges, edges[1:]))


def cut_crossing_ms(model: CostModel, cuts: Sequence[int]) -> list[float]:
    """Both directions of each cut over the slowest link (as the simulator prices a crossing, times two)."""
    slowest = model.network.slowest_bandwidth()
    return [2 * (model.profile.layers[c].output_bytes / slowest * 1000.0 + model.network.latency_ms) for c in cuts]


SCREEN_LIMIT = 200
"""Assignments the screen enumerates per cut before it builds the plan greedily (exact for one board kind)."""


def analytic_report(model: CostModel, cuts: Sequence[int], pool: Sequence[NodeSpec],
                    limit: int | None = None) -> ReplicaReport:
    """The hold-time model's replica plans for ``cuts`` over ``pool``; PartitionError when a stage fits no node."""
    ranges = _bounds(model, cuts)
    work = [model.profile_ms(a, b) for a, b in ranges]
    memory = [model.memory_bytes(a, b) for a, b in ranges]
    crossing = cut_crossing_ms(model, cuts)
    return plan_replicas(work, memory, crossing, pool, chain_latency_ms=sum(work) + sum(crossing), limit=limit)


def fixed_lanes(model: CostModel, cuts: Sequence[int], pool: Sequence[NodeSpec],
                first: Sequence[NodeSpec] | None = None) -> list[list[str]]:
    """Fixed chains: ``first`` (e.g. CWB's chain) then chains of nodes like it, each stage on a node it fits."""
    ranges = _bounds(model, cuts)
    need = [model.memory_bytes(a, b) for a, b in ranges]
    left = list(pool)
    lanes: list[list[NodeSpec]] = []
    if first is not None:
        lanes.append(list(first))
        left = [node for node in left if node.name not in {n.name for n in first}]
    model_chain = lanes[0] if lanes else None
    while len(left) >= len(ranges):
        lane: list[NodeSpec] = []
        for s, wanted in enumerate(need):
            fits = [node for node in left if node.memory_bytes >= wanted and node not in lane]
            if model_chain is not None:
                like = [node for node in fits if (node.speed, node.memory_bytes) ==
                        (model_chain[s].speed, model_chain[s].memory_bytes)]
                fits = like or fits
            else:  # the largest stage memory first gets the node with the least room that holds it
                fits.sort(key=lambda node: (node.memory_bytes, -node.speed))
            if not fits:
                break
            lane.append(fits[0])
            left.remove(fits[0])
        if len(lane) < len(ranges):
            break
        lanes.append(lane)
        model_chain = model_chain or lane
    if not lanes:
        raise PartitionError("no chain of nodes holds every stage of this cut")
    return [[lane[s].name for lane in lanes] for s in range(len(ranges))]


class _Scorer:
    """Simulates plans once each (keyed by cut, nodes, mode, policy)."""

    def __init__(self, model: CostModel, pool: Sequence[NodeSpec], iterations: int) -> None:
        self.model, self.pool, self.iterations = model, tuple(pool), iterations
        self.cache: dict[tuple, float | None] = {}

    def score(self, cuts: tuple[int, ...], stages: Sequence[Sequence[str]], mode: Mode, policy: Policy) -> float | None:
        key = (cuts, tuple(tuple(s) for s in stages), mode, policy)
        if key not in self.cache:
            profile = self.model.profile
            times, transfers = stage_times_from_profile(profile, self.pool, stages, _bounds(self.model, cuts), self.model.network)
            config = SimConfig(stages=tuple(tuple(s) for s in stages), times=times, transfer_ms=transfers,
                               iterations=self.iterations, mode=mode, policy=policy, data_ms=profile.data_ms)
            try:
                self.cache[key] = simulate(config).iteration_ms
            except ConfigError:
                self.cache[key] = None
        return self.cache[key]


def _fits(model: CostModel, cuts: Sequence[int], stages: Sequence[Sequence[str]], pool: Sequence[NodeSpec]) -> bool:
    by_name = {node.name: node for node in pool}
    return all(by_name[name].memory_bytes >= model.memory_bytes(a, b)
               for (a, b), names in zip(_bounds(model, cuts), stages) for name in names)


def _options(scorer: _Scorer, method: str, cuts: tuple[int, ...], report: ReplicaReport | None,
             lanes: list[list[str]] | None, plans: Sequence[ReplicaPlan], policies: Sequence[Policy]) -> list[PlanOption]:
    model, pool = scorer.model, scorer.pool
    names = tuple(model.profile.layers[c].name for c in cuts)
    out = []
    if lanes is not None:
        out.append(PlanOption(method, cuts, names, "fixed", "first_free", tuple(map(tuple, lanes)),
                              _fits(model, cuts, lanes, pool), scorer.score(cuts, lanes, "fixed", "first_free"),
                              report.fixed_iteration_ms if report else None))
    for plan in plans:
        for policy in policies:
            out.append(PlanOption(method, cuts, names, "dynamic", policy, plan.nodes, _fits(model, cuts, plan.nodes, pool),
                                  scorer.score(cuts, plan.nodes, "dynamic", policy), plan.iteration_ms))
    return out


def _baseline(scorer: _Scorer, method: str, candidate: Candidate) -> list[PlanOption]:
    """Fixed and dynamic (first free, its best replica plan) options of one baseline cut."""
    model, pool = scorer.model, scorer.pool
    try:
        report = analytic_report(model, candidate.cuts, pool)
    except PartitionError:
        report = None
    by_name = {node.name: node for node in pool}
    try:
        lanes = fixed_lanes(model, candidate.cuts, pool, [by_name[name] for name in candidate.order])
    except PartitionError:
        lanes = None
    plans = [report.best] if report is not None else []
    options = _options(scorer, method, candidate.cuts, report, lanes, plans, ("first_free",))
    if not options:  # nothing can serve it: show why, unscored
        order = tuple((name,) for name in candidate.order)
        options = [PlanOption(method, candidate.cuts, candidate.cut_names, mode, "first_free", order, False, None)
                   for mode in ("fixed", "dynamic")]
    return options


def recommend(model: CostModel, pool: Sequence[NodeSpec], partitions: int, *, best_e: Candidate,
              iterations: int | None = None, shortlist: int = SHORTLIST) -> Recommendation:
    """The fastest fitting plan of ``partitions`` stages over ``pool`` and the baselines, all simulated."""
    pool = tuple(pool)
    iterations = iterations or default_iterations(len(pool))
    scorer = _Scorer(model, pool, iterations)
    cut_sets = fitting_cut_sets(model, pool, partitions)
    mean = _mean_pool(pool)
    rough = []
    for cuts in cut_sets:
        report = analytic_report(model, cuts, mean, limit=0)  # water-filling on mean-speed boards
        rough.append((report.best.iteration_ms, report.fixed_iteration_ms, cuts))
    candidates = {entry[2]: None for key in (0, 1) for entry in sorted(rough, key=lambda e: (e[key], e[2]))[:SCREEN]}
    screened: list[tuple[float, float, tuple[int, ...], ReplicaReport]] = []
    for cuts in candidates:
        try:
            report = analytic_report(model, cuts, pool, limit=SCREEN_LIMIT)
        except PartitionError:
            continue
        screened.append((report.best.iteration_ms, report.fixed_iteration_ms, cuts, report))
    options: list[PlanOption] = []
    picked = [e[2] for e in sorted(screened, key=lambda e: (e[0], e[2]))[:shortlist]]
    picked += [e[2] for e in sorted(screened, key=lambda e: (e[1], e[2]))[:1] if e[2] not in picked]
    for cuts in picked:
        report = analytic_report(model, cuts, pool)  # every plan where that is affordable, for the runner-ups
        try:
            lanes = fixed_lanes(model, cuts, pool)
        except PartitionError:
            lanes = None
        options += _options(scorer, "search", cuts, report, lanes, report.plans[:1], POLICIES)
        options += _options(scorer, "search", cuts, None, None, report.plans[1:REPLICA_PLANS], ("first_free",))
    base: list[PlanOption] = []
    base += _baseline(scorer, "paper", best_e)
    for name in ("pipedream", "gpipe"):
        try:
            base += _baseline(scorer, name, getattr(baselines, name)(model, pool, partitions))
        except PartitionError:
            continue
    runnable = [o for o in options + base if o.fits and o.predicted_iteration_ms is not None]
    if not runnable:
        raise PartitionError(f"no plan of {partitions} partitions can run on these nodes")
    best = min(runnable, key=lambda o: (o.predicted_iteration_ms, o.mode != "dynamic", o.policy != "first_free"))
    recommended = PlanOption("recommended", best.cuts, best.cut_names, best.mode, best.policy, best.stages, True,
                             best.predicted_iteration_ms, best.analytic_ms)
    return Recommendation(recommended, tuple(base), len(cut_sets), len(scorer.cache), iterations)


def _mean_pool(pool: Sequence[NodeSpec]) -> tuple[NodeSpec, ...]:
    """``len(pool)`` interchangeable boards of the pool's mean speed and largest memory (for the screen)."""
    speed = sum(node.speed for node in pool) / len(pool)
    memory = max(node.memory_bytes for node in pool)
    return tuple(NodeSpec(f"mean-{i}", memory, speed) for i in range(len(pool)))
