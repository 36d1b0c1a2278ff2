"""CWB partition search (paper Algorithm 2, generalised): exact best E over every cut set and node order that fits.

With the paper's objective (``engine.cwb.cost``, the default) the cut sets that fit memory are
enumerated per node order, as Algorithm 2's loops over the candidate points do, depth first, cut
short as soon as a stage overflows its node (memory balancing makes the lists short: 2 cut sets
for ResNet-18 on 3 GB boards with the paper's accounting) and bounded: a prefix whose least
reachable bracket (``_paper_bound``) is worse than the ``top``-th best known is not expanded.
Its E depends on compute and transfers separately, so the dominance argument below does not hold
for it. It is exact while the distinct node orders (boards of one kind count once) hold at most
``PAPER_CHAINS`` fitting cut sets; past that, the orders whose min-max chain is quickest are searched. The rest of
this docstring describes the search for the ``busy`` objective.

The paper enumerates the cut pairs left after memory balancing for three identical TX2s and
keeps the pair with the highest E (eq. 9). We solve the same problem exactly for any number of
partitions ``n``, any profile length ``q`` and mixed boards:

1. **Memory balancing** (step 1): a stage ``[s, e)`` on node ``v`` is allowed only when its
   memory (``engine.cwb.cost``) fits ``v``'s budget. Since the layers' state only grows with
   ``e``, the scan over ``e`` stops at the first end whose state alone overflows the budget.
2. **Time equalisation** (step 2): for a fixed chain order, maximising E means minimising
   ``f = S2 / S1^2`` where ``S1 = sum t_k = T`` and ``S2 = sum t_k^2`` (variance = ``f/n - 1/n^2``).
   ``f`` is not a sum, but a prefix with ``S1' >= S1`` and ``S2' <= S2`` gives a value at least as
   good for *every* completion (bigger denominator, smaller numerator). So a dynamic program
   over (stage, end layer) that keeps only the non-dominated ``(S1, S2)`` pairs is exact. To list
   the ``top`` best candidates, not just one, it keeps every pair dominated by fewer than
   ``top`` others (the first ``top`` skyline layers): a pair with ``top`` dominators cannot be
   among the ``top`` best completions, whatever the completion.
3. **Node order**: stage times depend on which node runs the stage (speed, memory, links),
   so every distinct ordered choice of ``n`` nodes from the pool is searched; nodes with the
   same speed and memory (and no per-link bandwidth of their own) are interchangeable and
   tried once, so identical boards cost a single order.

What E does not see: it is scale-free, so it rewards balance, not speed. Between two chains it
prefers the better balanced one even if the other is faster (or uses faster boards), and a cut
whose large tensor pads a light stage can beat a cheaper cut. That is the paper's criterion and
we keep it; reports show T (eq. 8) and the bottleneck beside E, and the replica plan
(``engine.cwb.replicas``) predicts the cluster's iteration time.

Cost: ``O(P * q^2 * n * F log F)`` for ``P`` distinct orders and skyline size ``F`` (small in
practice; memory pruning shrinks ``q^2``), further cut by a branch-and-bound: a prefix whose
least reachable ``f`` is worse than the ``top``-th best chain already known (first from a hill
climb, then from earlier orders) is dropped. Exactness is checked against brute force in the tests.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right, insort
from collections.abc import Sequence
from dataclasses import dataclass

from engine.cwb.cost import Candidate, CostModel
from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.paper_search import PAPER_CHAINS, _count_fitting, _enumerate_order, _unique_best
from engine.cwb.units import format_bytes
from engine.errors import PartitionError

log = logging.getLogger(__name__)

MAX_ORDERS = 5040
"""Most distinct node orders one search tries (7! — seven all-different boards)."""


@dataclass(frozen=True)
class SearchResult:
    """Outcome of a CWB search for one number of partitions."""

    partitions: int
    """Number of stages searched for."""
    best: Candidate
    """The feasible candidate with the highest E."""
    candidates: tuple[Candidate, ...]
    """The best feasible candidates, best first (at most ``top``)."""
    feasible_count: int
    """How many (cut set, node order) pairs fit memory: the paper's "candidate partition points"."""
    orders_searched: int
    """Distinct node orders tried."""


def search(
    model: CostModel,
    nodes: Sequence[NodeSpec],
    partitions: int,
    *,
    top: int = 10,
    reorder: bool = True,
    max_orders: int = MAX_ORDERS,
) -> SearchResult:
    """Exact CWB search: the ``top`` feasible chains of ``partitions`` stages with the highest E.

    ``nodes`` is the pool; with ``reorder`` every distinct ordered choice of ``partitions`` of them
    is tried, without it the first ``partitions`` nodes run the stages in the given order.
    Raises PartitionError when nothing fits, naming the memory budget or partition count that would.
    """
    _check(model, nodes, partitions)
    if top < 1:
        raise PartitionError(f"top must be at least 1, got {top}")
    orders = node_orders(nodes, partitions, model, reorder=reorder, max_orders=max_orders)
    skipped = 0
    if model.objective != "busy" and len(orders) > 1:
        counts = {order: _count_fitting(model, order) for order in orders}
        if sum(counts.values()) > PAPER_CHAINS:
            kept: list[tuple[NodeSpec, ...]] = []
            total = 0
            for order in _fastest_orders(model, orders):
                if kept and total + counts[order] > PAPER_CHAINS:
                    break
                kept.append(order)
                total += counts[order]
            skipped = sum(counts.values()) - total
            orders = kept
    finals: list[tuple[float, tuple[int, ...], tuple[NodeSpec, ...]]] = []
    if model.objective == "busy":
        finals = _seeds(model, orders[0], top)
    feasible = skipped
    for order in orders:
        if model.objective != "busy":
            threshold = finals[top * 2 - 1][0] if len(finals) >= top * 2 else math.inf
            entries, count = _enumerate_order(model, order, top * 2, threshold)
            feasible += count
            finals = _unique_best(finals + entries, top * 2)
            continue
        threshold = finals[top - 1][0] if len(finals) >= top else math.inf
        entries, count = _search_order(model, order, top, threshold)
        feasible += count
        finals.extend((s2 / (s1 * s1) if s1 > 0 else 0.0, cuts, order) for s1, s2, cuts in entries)
        finals = _unique_best(finals, top * 2)
    if not finals:
        raise PartitionError(infeasible_message(model, nodes, partitions, reorder=reorder))
    # Re-score a few more than asked with the direct formula, which decides near-ties exactly.
    scored = [model.evaluate(cuts, order, "cwb") for _, cuts, order in finals[: top * 2]]
    scored.sort(key=Candidate.rank_key)
    log.debug("cwb search: %d orders, %d feasible chains, best E %.3f", len(orders), feasible, scored[0].utilisation_index)
    return SearchResult(
        partitions=partitions,
        best=scored[0],
        candidates=tuple(scored[:top]),
        feasible_count=feasible,
        orders_searched=len(orders),
    )


def _fastest_orders(model: CostModel, orders):
    """The orders, those whose min-max busy chain (``_seeds``' start) is fastest first; orders where nothing fits last."""
    def key(order):
        found = _minmax_chain(model, order)
        return (found is None, found[0] if found else 0.0)

    return sorted(orders, key=key)


def _seeds(model: CostModel, order: Sequence[NodeSpec], top: int):
    """Feasible chains found cheaply, to start the bound: a hill climb on ``f`` from the min-max busy cut.

    Every chain the climb visits is feasible, so the ``top``-th best ``f`` among them bounds the
    true ``top``-th best from above, and pruning with it is safe.
    """
    q = model.q
    found = _minmax_chain(model, order)
    if found is None:
        return []
    current = found[1]
    visited = {current: _chain_f(model, current, order)}
    while True:
        for i in range(len(current)):
            for delta in (-1, 1):
                moved = current[:i] + (current[i] + delta,) + current[i + 1 :]
                if moved not in visited and list(moved) == sorted(set(moved)) and 0 <= moved[0] and moved[-1] <= q - 2:
                    visited[moved] = _chain_f(model, moved, order)
        step = min((f, cuts) for cuts, f in visited.items() if f is not None)
        if step[1] == current:
            break
        current = step[1]
    return _unique_best([(f, cuts, tuple(order)) for cuts, f in visited.items() if f is not None], top * 2)


def _minmax_chain(model: CostModel, order: Sequence[NodeSpec]) -> tuple[float, tuple[int, ...]] | None:
    """(busiest node's ms, cuts) of the fitting chain on ``order`` whose busiest node is least busy, or None."""
    n, q = len(order), model.q
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for k, node in enumerate(order):
        prev = order[k - 1] if k > 0 else None
        nxt = order[k + 1] if k + 1 < n else None
        new: dict[int, tuple[float, tuple[int, ...]]] = {}
        for start, (peak, cuts) in best.items():
            first_end = q if k == n - 1 else start + 1
            for end in range(first_end, q - (n - 1 - k) + 1):
                if model.memory_bytes(start, end) > node.memory_bytes:
                    continue
                t = model.compute_ms(start, end, node) + model.send_ms(start, end, node, prev, nxt)
                value = (max(peak, t), cuts + ((start - 1,) if k > 0 else ()))
                if end not in new or value < new[end]:
                    new[end] = value
        best = new
    return best.get(q)


def _chain_f(model: CostModel, cuts: tuple[int, ...], order: Sequence[NodeSpec]) -> float | None:
    """``S2 / S1^2`` of a chain, or None when a stage does not fit its node."""
    bounds = (0,) + tuple(c + 1 for c in cuts) + (model.q,)
    s1 = s2 = 0.0
    for k, node in enumerate(order):
        start, end = bounds[k], bounds[k + 1]
        if model.memory_bytes(start, end) > node.memory_bytes:
            return None
        prev = order[k - 1] if k > 0 else None
        nxt = order[k + 1] if k + 1 < len(order) else None
        t = model.compute_ms(start, end, node) + model.send_ms(start, end, node, prev, nxt)
        s1 += t
        s2 += t * t
    return s2 / (s1 * s1) if s1 > 0 else 0.0


def _check(model: CostModel, nodes: Sequence[NodeSpec], partitions: int) -> None:
    if partitions < 1:
        raise PartitionError(f"partitions must be at least 1, got {partitions}")
    if partitions > model.q:
        raise PartitionError(f"{partitions} partitions need at least {partitions} layers; the profile has {model.q}")
    if partitions > len(nodes):
        fewest = smallest_partitions(model, nodes)
        hint = f"; use at most {len(nodes)} (the fewest that fit memory: {fewest})" if fewest else ""
        raise PartitionError(f"{partitions} partitions need {partitions} nodes; only {len(nodes)} given{hint}")


def _search_order(model: CostModel, order: Sequence[NodeSpec], depth: int, threshold: float):
    """Skyline DP over one node order; returns (final (S1, S2, cuts) entries, feasible cut-set count).

    Entries whose lower bound on ``f`` exceeds ``threshold`` (the ``depth``-th best ``f`` already
    known) are dropped: they cannot reach the top. Counting ignores that pruning.
    """
    q, n = model.q, len(order)
    fronts: dict[int, list[tuple[float, float, tuple[int, ...]]]] = {0: [(0.0, 0.0, ())]}
    counts: dict[int, int] = {0: 1}
    total_ms = model.profile_ms(0, q)
    latency = model.network.latency_ms
    slowest_link = model.network.slowest_bandwidth()
    for k, node in enumerate(order):
        prev = order[k - 1] if k > 0 else None
        nxt = order[k + 1] if k + 1 < n else None
        last_end = q - (n - 1 - k)
        rest = n - 1 - k
        fastest_rest = max((other.speed for other in order[k + 1 :]), default=1.0)
        slowest_rest = min((other.speed for other in order[k + 1 :]), default=1.0)
        messages = max(2 * rest - 1, 0)
        new_fronts: dict[int, list[tuple[float, float, tuple[int, ...]]]] = {}
        new_counts: dict[int, int] = {}
        for start, count in counts.items():
            entries = fronts.get(start, ())
            cut = (start - 1,) if k > 0 else ()
            first_end = q if k == n - 1 else start + 1
            for end in range(first_end, last_end + 1):
                if model.state_bytes(start, end) > node.memory_bytes:
                    break
                if model.memory_bytes(start, end) > node.memory_bytes:
                    continue
                new_counts[end] = new_counts.get(end, 0) + count
                if not entries:
                    continue
                t = model.compute_ms(start, end, node) + model.send_ms(start, end, node, prev, nxt)
                tt = t * t
                remaining_ms = total_ms - model.profile_ms(0, end)
                floor = remaining_ms / fastest_rest + messages * latency
                ceiling = remaining_ms / slowest_rest + messages * (
                    model.max_output_from(end - 1) / slowest_link * 1000.0 + latency
                )
                bucket = new_fronts.setdefault(end, [])
                for s1, s2, cuts in entries:
                    s1 += t
                    s2 += tt
                    if s1 <= 0 or _lower_bound(s1, s2, rest, floor, ceiling) <= threshold:
                        bucket.append((s1, s2, cuts + cut))
        fronts = {end: _skyline(bucket, depth) for end, bucket in new_fronts.items() if bucket}
        counts = new_counts
    return fronts.get(q, []), counts.get(q, 0)


def _lower_bound(s1: float, s2: float, rest: int, floor: float, ceiling: float) -> float:
    """Least ``f = S2 / S1^2`` any completion of a prefix (``S1 > 0``) can reach.

    The ``rest`` remaining stages add busy time ``floor <= r <= ceiling`` (their compute on the
    fastest / slowest remaining node, plus the fewest / largest messages still to send) and, by
    Cauchy-Schwarz, at least ``r^2 / rest`` to ``S2``. Over ``r`` the bound
    ``(S2 + r^2/rest) / (S1 + r)^2`` falls until ``r = rest * S2 / S1`` and rises after it.
    """
    if rest == 0:
        return s2 / (s1 * s1)
    r = min(max(floor, rest * s2 / s1), ceiling)
    total = s1 + r
    return (s2 + r * r / rest) / (total * total)


def _skyline(entries: list[tuple[float, float, tuple[int, ...]]], depth: int):
    """Entries dominated (larger-or-equal S1 and smaller-or-equal S2) by fewer than ``depth`` others."""
    entries.sort(key=lambda e: (-e[0], e[1]))
    kept = []
    seen_s2: list[float] = []
    for entry in entries:
        if bisect_right(seen_s2, entry[1]) < depth:
            kept.append(entry)
            insort(seen_s2, entry[1])
    return kept


def node_orders(
    nodes: Sequence[NodeSpec], partitions: int, model: CostModel, *, reorder: bool = True, max_orders: int = MAX_ORDERS
) -> list[tuple[NodeSpec, ...]]:
    """Distinct ordered choices of ``partitions`` nodes; interchangeable nodes are tried once.

    Two nodes are interchangeable when they have the same speed and memory and no per-link
    bandwidth names either of them. Raises PartitionError past ``max_orders``.
    """
    if not reorder:
        return [tuple(nodes[:partitions])]
    linked = model.network.named_in_links()
    groups: dict[tuple, list[NodeSpec]] = {}
    for node in nodes:
        key = ("link", node.name) if node.name in linked else ("spec", node.speed, node.memory_bytes)
        groups.setdefault(key, []).append(node)
    keys = list(groups)
    remaining = {key: len(groups[key]) for key in keys}
    orders: list[tuple[NodeSpec, ...]] = []

    def extend(prefix: list[NodeSpec]) -> None:
        if len(prefix) == partitions:
            orders.append(tuple(prefix))
            if len(orders) > max_orders:
                raise PartitionError(
                    f"more than {max_orders} distinct node orders for {partitions} partitions over "
                    f"{len(nodes)} nodes; give boards of one kind the same speed and memory, or keep the file order"
                )
            return
        for key in keys:
            if remaining[key]:
                used = len(groups[key]) - remaining[key]
                remaining[key] -= 1
                prefix.append(groups[key][used])
                extend(prefix)
                prefix.pop()
                remaining[key] += 1

    extend([])
    return orders


def min_peak_memory(model: CostModel, partitions: int) -> tuple[int, tuple[int, ...]]:
    """Smallest possible largest-stage memory over all cuts into ``partitions`` stages, and those cuts.

    This is the smallest per-node budget with which identical nodes could hold the model.
    """
    q = model.q
    if not 1 <= partitions <= q:
        raise PartitionError(f"partitions must be in 1..{q}, got {partitions}")
    best: dict[int, tuple[int, tuple[int, ...]]] = {0: (0, ())}
    for k in range(partitions):
        last_end = q - (partitions - 1 - k)
        new: dict[int, tuple[int, tuple[int, ...]]] = {}
        for start, (peak, cuts) in best.items():
            cut = (start - 1,) if k > 0 else ()
            first_end = q if k == partitions - 1 else start + 1
            for end in range(first_end, last_end + 1):
                value = (max(peak, model.memory_bytes(start, end)), cuts + cut)
                if end not in new or value < new[end]:
                    new[end] = value
        best = new
    return best[q]


def smallest_partitions(model: CostModel, nodes: Sequence[NodeSpec], *, reorder: bool = True) -> int | None:
    """Fewest partitions that fit these nodes' memory (the paper: 7.6 GB over 3 GB boards -> 3), or None."""
    for partitions in range(1, min(len(nodes), model.q) + 1):
        orders = node_orders(nodes, partitions, model, reorder=reorder)
        if any(_fits_order(model, order) for order in orders):
            return partitions
    return None


def _fits_order(model: CostModel, order: Sequence[NodeSpec]) -> bool:
    """True when some cut set fits every node of ``order`` (reachability, no timing)."""
    q, n = model.q, len(order)
    reachable = {0}
    for k, node in enumerate(order):
        last_end = q - (n - 1 - k)
        nxt: set[int] = set()
        for start in reachable:
            first_end = q if k == n - 1 else start + 1
            for end in range(first_end, last_end + 1):
                if model.state_bytes(start, end) > node.memory_bytes:
                    break
                if model.memory_bytes(start, end) <= node.memory_bytes:
                    nxt.add(end)
        reachable = nxt
    return q in reachable


def infeasible_message(model: CostModel, nodes: Sequence[NodeSpec], partitions: int, *, reorder: bool = True) -> str:
    """One line saying that nothing fits and what would: a memory budget, a partition or node count."""
    budgets = sorted({node.memory_bytes for node in nodes})
    budget_text = format_bytes(budgets[0]) + " each" if len(budgets) == 1 else "/".join(format_bytes(b) for b in budgets)
    peak, _ = min_peak_memory(model, partitions)
    text = (
        f"no cut of {model.q} layers into {partitions} partitions fits the nodes' memory ({budget_text}): "
        f"the best cut needs {format_bytes(peak)} on its largest partition, so give every node at least "
        f"{format_bytes(peak)}"
    )
    fewest = smallest_partitions(model, nodes, reorder=reorder)
    if fewest is not None:
        return text + f", or use {fewest} partitions"
    largest = budgets[-1]
    for count in range(partitions + 1, model.q + 1):
        if min_peak_memory(model, count)[0] <= largest:
            return text + f", or use {count} nodes of {format_bytes(largest)} ({len(nodes)} given)"
    worst = max(range(model.q), key=lambda i: model.memory_bytes(i, i + 1))
    return text + (
        f"; even one layer per node does not fit {format_bytes(largest)}: layer "
        f"{model.profile.layers[worst].name!r} alone needs {format_bytes(model.memory_bytes(worst, worst + 1))}"
    )
