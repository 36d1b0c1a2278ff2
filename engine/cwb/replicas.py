"""Replica plan: how many nodes serve each stage of a chosen partition, and the predicted iteration time.

**Dynamic chains (paper section 3.3.2, Figure 4b).** Each mini-batch forms a chain of one free
node per stage. A stage-``s`` node is *held* from the moment its input activation starts to
arrive until its own backward is done and its input gradient is sent back: it receives (cut
``s-1`` forward), computes forward, sends (cut ``s`` forward), waits while the later stages run,
receives the gradient (cut ``s`` backward), computes backward and sends its gradient (cut ``s-1``
backward). Transfers are blocking, so they occupy both ends. With ``w_s`` the stage's
forward + backward on the node and ``x_c`` both directions of cut ``c``::

    inner_{n} = w_n
    inner_s   = w_s + x_s + inner_{s+1}          (the stage and everything after it)
    H_s       = x_{s-1} + inner_s                (hold time; x_0 = 0, so H_1 = chain latency L)

A stage served by ``r_s`` identical nodes completes at most ``r_s / H_s`` mini-batches per unit
time, so the throughput is at most ``min_s r_s / H_s``. The bound is reached: start a mini-batch
every ``P = max_s H_s / r_s`` and give mini-batch ``j`` node ``j mod r_s`` of stage ``s``; that node
is next needed ``r_s P >= H_s`` later, when it is free. Hence the predicted time per iteration is
``P = max_s H_s / r_s``, and the best plan minimises it over all ``r_1 + ... + r_n <= N``.

With mixed boards a stage pool completes ``sum_v 1 / H_{s,v}`` mini-batches per unit time, and the
wait for later stages is taken as the slowest node of the next pool (an upper bound on ``H``, so
the prediction is conservative); for identical boards this is exact. A node whose memory budget
is below a stage's memory is never put on that stage; a node may stay idle.

**Many boards.** Boards of one kind (speed, memory) are interchangeable, so plans are counted per
kind. Up to ``MAX_ASSIGNMENTS`` per-kind splits every plan is evaluated (exact). Beyond that, and
this is what keeps a 48-board rack of four kinds fast, the plan is built greedily: one node per
stage (the fastest kind that fits), then one node at a time to wherever it cuts the predicted
iteration most, then single-node moves between stages while one helps. For one kind this
water-filling is exact (each added node goes to the stage with the largest ``H_s / r_s``); for
several kinds it is a heuristic, and the plans it visited are listed best first.

**Fixed chains (Figure 4a, the paper's baseline).** ``N // n`` chains each run one mini-batch in
``L`` (the chain latency = T of eq. 8), so an iteration takes ``L / (N // n)``.

**The paper's case.** Stage times 1036 / 1140 / 922 ms (Table 6) and six TX2s: with no transfer
cost the hold times are 3098 / 2062 / 922 ms and 3/2/1 wins (1033 ms per iteration). Table 5's
baseline, two fixed chains at 3572 ms per iteration (1000 iterations in 3572 s), implies a chain
latency of 7144 ms, i.e. about 4044 ms of transfers per mini-batch; with those transfers 3/2/1
still wins and predicts ~3053 ms per iteration against Table 6's measured 2750 ms.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.cwb.cost import Candidate, CostModel
from engine.cwb.nodes_spec import NodeSpec
from engine.errors import PartitionError

MAX_ASSIGNMENTS = 20_000
"""Most node-to-stage assignments evaluated one by one; past it the greedy plan is built (module docstring)."""


@dataclass(frozen=True)
class ReplicaPlan:
    """One assignment of the pool's nodes to stages, with its predicted dynamic-chain speed."""

    nodes: tuple[tuple[str, ...], ...]
    """Names of the nodes serving each stage."""
    idle: tuple[str, ...]
    """Nodes left out (they do not fit any useful stage, or would slow the chains)."""
    hold_ms: tuple[float, ...]
    """Per stage, the longest hold time of one of its nodes (``H_s``)."""
    iteration_ms: float
    """Predicted wall time per mini-batch with dynamic chains (``max_s H_s / r_s``)."""
    bottleneck: int
    """Index of the stage that limits the throughput."""

    @property
    def replicas(self) -> tuple[int, ...]:
        """Node count per stage (the paper's 3/2/1)."""
        return tuple(len(names) for names in self.nodes)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "replicas": list(self.replicas),
            "nodes": [list(names) for names in self.nodes],
            "idle": list(self.idle),
            "hold_ms": list(self.hold_ms),
            "iteration_ms": self.iteration_ms,
            "bottleneck_stage": self.bottleneck,
        }


@dataclass(frozen=True)
class ReplicaReport:
    """All replica plans for one partition, best first, and the fixed-chain comparison."""

    plans: tuple[ReplicaPlan, ...]
    """Every plan evaluated, fastest first."""
    chain_latency_ms: float
    """Time one mini-batch takes through one chain (L)."""
    fixed_chains: int
    """How many fixed chains the pool forms (``N // n``)."""
    fixed_iteration_ms: float
    """Predicted wall time per mini-batch with fixed chains."""

    @property
    def best(self) -> ReplicaPlan:
        """The plan with the shortest predicted iteration."""
        return self.plans[0]

    def to_dict(self, limit: int = 10) -> dict[str, Any]:
        """Plain data for ``--json`` (the best ``limit`` plans)."""
        return {
            "best": self.best.to_dict(),
            "plans": [plan.to_dict() for plan in self.plans[:limit]],
            "chain_latency_ms": self.chain_latency_ms,
            "fixed_chains": self.fixed_chains,
            "fixed_iteration_ms": self.fixed_iteration_ms,
        }


def hold_times(work_ms: Sequence[float], cut_ms: Sequence[float]) -> list[float]:
    """``H_s`` for one node per stage: its transfers in, its own work, and everything after it."""
    if len(cut_ms) != len(work_ms) - 1:
        raise PartitionError(f"{len(work_ms)} stages need {len(work_ms) - 1} cut times, got {len(cut_ms)}")
    inner = [0.0] * len(work_ms)
    for s in range(len(work_ms) - 1, -1, -1):
        inner[s] = work_ms[s] + (cut_ms[s] + inner[s + 1] if s + 1 < len(work_ms) else 0.0)
    return [inner[s] + (cut_ms[s - 1] if s > 0 else 0.0) for s in range(len(work_ms))]


def plan_replicas(
    work_ms: Sequence[float],
    memory_bytes: Sequence[int],
    cut_ms: Sequence[float],
    pool: Sequence[NodeSpec],
    *,
    chain_latency_ms: float | None = None,
    limit: int | None = None,
) -> ReplicaReport:
    """Every assignment of ``pool`` to the stages, fastest dynamic-chain plan first.

    ``work_ms`` is each stage's forward + backward on the profiled board (divided by a node's
    speed), ``memory_bytes`` what a node needs to serve it, ``cut_ms`` both directions of each cut.
    ``chain_latency_ms`` (default: the identical-board latency) sets the fixed-chain comparison.
    Past ``limit`` (default ``MAX_ASSIGNMENTS``) assignments the plan is built greedily.
    """
    n = len(work_ms)
    if n < 1 or len(memory_bytes) != n:
        raise PartitionError("replica plan needs the work and memory of at least one stage")
    if len(pool) < n:
        raise PartitionError(f"{n} stages need at least {n} nodes; the pool has {len(pool)}")
    hold_times(work_ms, cut_ms)  # validates the cut count
    groups: dict[tuple[float, int], list[NodeSpec]] = {}
    for node in pool:
        groups.setdefault((node.speed, node.memory_bytes), []).append(node)
    allowed_per_group = [[s for s in range(n) if memory_bytes[s] <= memory] for (_, memory) in groups]
    total = 1
    for (_, members), allowed in zip(groups.items(), allowed_per_group):
        # count members over len(allowed) stages + idle, with repetition: C(count + bins - 1, bins - 1)
        total *= math.comb(len(members) + len(allowed), len(allowed))
    member_lists = list(groups.values())
    if total > (MAX_ASSIGNMENTS if limit is None else limit):
        if len(member_lists) == 1:
            plans = [_water_fill(work_ms, memory_bytes, cut_ms, member_lists[0])]
        else:
            plans = _greedy(work_ms, memory_bytes, cut_ms, member_lists)
        per_group = []  # nothing left to enumerate
    else:
        plans = []
        per_group = [list(_splits(len(members), allowed, n)) for members, allowed in zip(member_lists, allowed_per_group)]
    for choice in itertools.product(*per_group) if per_group else ():
        stages: list[list[NodeSpec]] = [[] for _ in range(n)]
        idle: list[str] = []
        for members, split in zip(member_lists, choice):
            position = 0
            for s, count in enumerate(split):
                target = stages[s] if s < n else None
                for node in members[position : position + count]:
                    if target is None:
                        idle.append(node.name)
                    else:
                        target.append(node)
                position += count
        if all(stages):
            plans.append(_evaluate(work_ms, cut_ms, stages, idle))
    if not plans:
        raise PartitionError("no assignment of the nodes gives every stage a node with enough memory")
    plans.sort(key=lambda p: (round(p.iteration_ms, 9), len(p.idle), tuple(-r for r in p.replicas)))
    identical_latency = hold_times(work_ms, cut_ms)[0]
    latency = identical_latency if chain_latency_ms is None else chain_latency_ms
    chains = len(pool) // n
    return ReplicaReport(
        plans=tuple(plans),
        chain_latency_ms=latency,
        fixed_chains=chains,
        fixed_iteration_ms=latency / chains,
    )


def replicas_for(model: CostModel, candidate: Candidate, pool: Sequence[NodeSpec]) -> ReplicaReport:
    """Replica plan for a searched candidate over the whole pool (its chain sets the fixed-chain latency)."""
    work = [model.profile_ms(s.first_layer, s.last_layer + 1) for s in candidate.stages]
    memory = [s.memory_bytes for s in candidate.stages]
    return plan_replicas(
        work, memory, candidate.cut_transfer_ms, pool, chain_latency_ms=candidate.minibatch_ms
    )


def _splits(count: int, allowed: Sequence[int], n: int):
    """Ways to spread ``count`` interchangeable nodes over the allowed stages and the idle bin ``n``."""
    bins = list(allowed) + [n]
    for bars in itertools.combinations_with_replacement(range(len(bins)), count):
        split = [0] * (n + 1)
        for b in bars:
            split[bins[b]] += 1
        yield tuple(split)


def _water_fill(work_ms, memory_bytes, cut_ms, members: list[NodeSpec]) -> ReplicaPlan:
    """One board kind: every node after the first per stage goes to the stage with the largest ``H_s / r_s`` (exact)."""
    n = len(work_ms)
    if any(need > members[0].memory_bytes for need in memory_bytes):
        raise PartitionError("no assignment of the nodes gives every stage a node with enough memory")
    holds = hold_times([w / members[0].speed for w in work_ms], cut_ms)
    counts = [1] * n
    heap = [(-holds[s], s) for s in range(n)]
    heapq.heapify(heap)
    for _ in range(len(members) - n):
        _, s = heapq.heappop(heap)
        counts[s] += 1
        heapq.heappush(heap, (-holds[s] / counts[s], s))
    stages, position = [], 0
    for count in counts:
        stages.append(members[position : position + count])
        position += count
    return _evaluate(work_ms, cut_ms, stages, [])


def _greedy(work_ms, memory_bytes, cut_ms, groups: list[list[NodeSpec]]) -> list[ReplicaPlan]:
    """Plans built one node at a time (module docstring, "Many boards"); best first, each once."""
    n = len(work_ms)
    allowed = [[s for s in range(n) if memory_bytes[s] <= members[0].memory_bytes] for members in groups]
    counts = [[0] * n for _ in groups]
    free = [len(members) for members in groups]
    seen: dict[tuple, ReplicaPlan] = {}

    def plan_of(table) -> ReplicaPlan:
        key = tuple(map(tuple, table))
        if key not in seen:
            stages: list[list[NodeSpec]] = [[] for _ in range(n)]
            idle: list[str] = []
            for members, row in zip(groups, table):
                position = 0
                for s, count in enumerate(row):
                    stages[s].extend(members[position : position + count])
                    position += count
                idle.extend(node.name for node in members[position:])
            seen[key] = _evaluate(work_ms, cut_ms, stages, idle)
        return seen[key]

    # One node per stage: the stages fewest kinds can hold first, then the heaviest; the fastest kind that fits.
    for s in sorted(range(n), key=lambda s: (sum(s in a for a in allowed), -work_ms[s])):
        options = [g for g in range(len(groups)) if free[g] and s in allowed[g]]
        if not options:
            raise PartitionError(f"no free node has the memory for stage {s + 1} ({memory_bytes[s]} bytes)")
        g = max(options, key=lambda g: groups[g][0].speed)
        counts[g][s] += 1
        free[g] -= 1

    def moves(table):
        """(kind, from stage or None = idle, to stage or None = idle) single-node changes, and swaps of two kinds."""
        kinds = range(len(groups))
        occupied = [sum(table[h][t] for h in kinds) for t in range(n)]
        for g in kinds:
            for s in allowed[g]:
                if free[g]:
                    yield ((g, None, s),)
                if table[g][s] and occupied[s] > 1:
                    yield ((g, s, None),)
                for t in allowed[g]:
                    if t != s and table[g][t]:
                        if occupied[t] > 1:
                            yield ((g, t, s),)
                        for h in kinds:  # swap: g from t to s, h from s to t
                            if h != g and table[h][s] and t in allowed[h]:
                                yield ((g, t, s), (h, s, t))

    def key(plan: ReplicaPlan) -> tuple:
        # Ties on the bottleneck are broken by the next-slowest stages, so water-filling moves past them.
        loads = sorted((hold / len(names) for hold, names in zip(plan.hold_ms, plan.nodes)), reverse=True)
        return (round(plan.iteration_ms, 6), [round(load, 6) for load in loads])

    current = plan_of(counts)
    while True:
        best_move, best_plan = None, current
        for move in moves(counts):
            trial = [row[:] for row in counts]
            for g, source, target in move:
                if target is not None:
                    trial[g][target] += 1
                if source is not None:
                    trial[g][source] -= 1
            candidate = plan_of(trial)
            if key(candidate) < key(best_plan):
                best_move, best_plan = move, candidate
        if best_move is None:
            break
        for g, source, target in best_move:
            if target is not None:
                counts[g][target] += 1
            if source is not None:
                counts[g][source] -= 1
            free[g] += (source is None) * -1 + (target is None) * 1
        current = best_plan
    return list(seen.values())


def _evaluate(work_ms, cut_ms, stages: list[list[NodeSpec]], idle: list[str]) -> ReplicaPlan:
    n = len(work_ms)
    inner_next = 0.0
    holds: list[float] = [0.0] * n
    rates: list[float] = [0.0] * n
    for s in range(n - 1, -1, -1):
        after = cut_ms[s] + inner_next if s + 1 < n else 0.0
        before = cut_ms[s - 1] if s > 0 else 0.0
        inner = [work_ms[s] / node.speed + after for node in stages[s]]
        holds[s] = max(inner) + before
        rates[s] = sum(1.0 / (value + before) if value + before > 0 else float("inf") for value in inner)
        inner_next = max(inner)
    bottleneck = min(range(n), key=lambda s: rates[s])
    slowest = rates[bottleneck]
    return ReplicaPlan(
        nodes=tuple(tuple(node.name for node in stage) for stage in stages),
        idle=tuple(idle),
        hold_ms=tuple(holds),
        iteration_ms=1.0 / slowest if slowest > 0 else float("inf"),
        bottleneck=bottleneck,
    )
