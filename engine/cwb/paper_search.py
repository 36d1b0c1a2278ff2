"""CWB search under the paper's E (eq. 9 as Algorithm 2 defines it): bounded depth-first enumeration of one node order.

Used by ``engine.cwb.search``; see its docstring for how the orders are chosen. The bracket of eq. 9,
``sum (c_k/T - 1/n)^2``, depends on compute and transfers separately, so no dominance between
prefixes holds; instead a prefix is dropped when the least bracket any completion can reach
(``_paper_bound``, exact for its relaxation) is worse than the best already found.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import NodeSpec
from engine.errors import PartitionError

PAPER_CHAINS = 2_000_000
"""With the paper's objective, the search is exact while the node orders hold at most this many fitting cut sets
in all; past it, the orders whose min-max chain is fastest are searched until they hold that many."""
MAX_CHAINS = 2_000_000
"""Most fitting cut sets a paper-objective search scores on one node order."""


def _enumerate_order(model: CostModel, order: Sequence[NodeSpec], keep: int, threshold: float = math.inf):
    """The ``keep`` best fitting cut sets of ``order`` (depth first, bounded), and how many fit in all.

    The bracket is eq. 9's ``sum (c_k/T - 1/n)^2 = S2/T^2 - (2/n) C/T + 1/n`` with ``C`` the compute,
    ``S2`` the sum of squared compute and ``T`` compute plus transfers. A prefix whose least
    reachable bracket (``_paper_bound``) exceeds the ``keep``-th best known (or ``threshold``,
    carried over from earlier orders) is not expanded. Returns ([(bracket, cuts, order)], count).
    """
    q, n = model.q, len(order)
    best: list[tuple[float, tuple[int, ...], tuple[NodeSpec, ...]]] = []
    chain = tuple(order)
    total_ms = model.profile_ms(0, q)
    latency = model.network.latency_ms
    slowest_link = model.network.slowest_bandwidth()
    leaves = 0
    bound = [threshold]

    def visit(k: int, start: int, c: float, s2: float, x: float, cuts: tuple[int, ...]) -> None:
        nonlocal leaves
        node = order[k]
        prev = order[k - 1] if k > 0 else None
        nxt = order[k + 1] if k + 1 < n else None
        rest = n - 1 - k
        later = order[k + 1 :]
        fastest = max((other.speed for other in later), default=1.0)
        slowest = min((other.speed for other in later), default=1.0)
        messages = max(2 * rest - 1, 0)
        first_end = q if k == n - 1 else start + 1
        for end in range(first_end, q - (n - 1 - k) + 1):
            if model.state_bytes(start, end) > node.memory_bytes:
                break
            if model.memory_bytes(start, end) > node.memory_bytes:
                continue
            compute = model.compute_ms(start, end, node)
            send = model.send_ms(start, end, node, prev, nxt)
            tail = cuts + ((start - 1,) if k > 0 else ())
            c2, s22, x2 = c + compute, s2 + compute * compute, x + send
            if rest:
                if bound[0] < math.inf:
                    remaining = total_ms - model.profile_ms(0, end)
                    heaviest_message = model.max_output_from(end - 1) / slowest_link * 1000.0 + latency
                    low = c2 + x2 + remaining / fastest + messages * latency
                    high = c2 + x2 + remaining / slowest + messages * heaviest_message
                    if _paper_bound(s22, c2, k + 1, rest, n, remaining / fastest, remaining / slowest, low, high) > bound[0]:
                        continue
                visit(k + 1, end, c2, s22, x2, tail)
                continue
            leaves += 1
            if leaves > MAX_CHAINS:
                raise PartitionError(
                    f"more than {MAX_CHAINS} cut sets had to be scored; give fewer partitions or smaller memory budgets"
                )
            total = c2 + x2
            value = 0.0 if total <= 0 else s22 / (total * total) - 2.0 * c2 / (n * total) + 1.0 / n
            best.append((max(value, 0.0), tail, chain))
            if len(best) >= 4 * keep:
                best[:] = _unique_best(best, keep)
            if len(best) >= keep:
                best[:] = _unique_best(best, keep)
                bound[0] = min(bound[0], best[-1][0])

    visit(0, 0, 0.0, 0.0, 0.0, ())
    return _unique_best(best, keep), _count_fitting(model, order)


def _paper_bound(s2: float, c: float, placed: int, rest: int, n: int, rest_low: float, rest_high: float,
                 t_low: float, t_high: float) -> float:
    """Least eq. 9 bracket any completion of a prefix can reach (placed stages: compute sum ``c``, squares ``s2``).

    With ``v = 1/T`` in ``[1/t_high, 1/t_low]`` the placed stages add ``v^2 s2 - 2 v c / n + placed/n^2``;
    the ``rest`` later stages, whose compute ``R`` lies in ``[rest_low, rest_high]``, add at least
    ``(R v - rest/n)^2 / rest`` (Cauchy-Schwarz), minimised over ``R``. Both are convex in ``v``,
    so a ternary search finds the minimum.
    """
    target = rest / n
    lo = 1.0 / t_high if t_high > 0 else 0.0
    hi = 1.0 / t_low if t_low > 0 else math.inf
    # Below target/rest_high the rest is short of its share even at its largest (w = rest_high v), above
    # target/rest_low it exceeds it even at its smallest (w = rest_low v); in between it can match it.
    first = target / rest_high if rest_high > 0 else math.inf
    second = target / rest_low if rest_low > 0 else math.inf
    base = (s2, -2.0 * c / n, placed / (n * n))
    pieces = [
        (lo, min(hi, first), rest_high),
        (max(lo, first), min(hi, second), None),
        (max(lo, second), hi, rest_low),
    ]
    best = math.inf
    for left, right, rate in pieces:
        if left > right:
            continue
        a2, a1, a0 = base
        if rate is not None:  # + (rate v - target)^2 / rest
            a2, a1, a0 = a2 + rate * rate / rest, a1 - 2.0 * rate * target / rest, a0 + target * target / rest
        v = -a1 / (2.0 * a2) if a2 > 0 else (left if a1 > 0 else right)
        v = min(max(v, left), right)
        if math.isinf(v):
            continue
        best = min(best, a2 * v * v + a1 * v + a0)
    return best - 1e-12


def _count_fitting(model: CostModel, order: Sequence[NodeSpec]) -> int:
    """How many cut sets fit every node of ``order`` (counting, no timing): the paper's candidate points."""
    q, n = model.q, len(order)
    counts = {0: 1}
    for k, node in enumerate(order):
        new: dict[int, int] = {}
        for start, count in counts.items():
            first_end = q if k == n - 1 else start + 1
            for end in range(first_end, q - (n - 1 - k) + 1):
                if model.state_bytes(start, end) > node.memory_bytes:
                    break
                if model.memory_bytes(start, end) <= node.memory_bytes:
                    new[end] = new.get(end, 0) + count
        counts = new
    return counts.get(q, 0)


def _unique_best(items, keep: int):
    """The ``keep`` smallest-``f`` items, each (cuts, order) once."""
    items.sort(key=lambda item: item[0])
    unique, seen = [], set()
    for item in items:
        key = (item[1], tuple(node.name for node in item[2]))
        if key not in seen:
            seen.add(key)
            unique.append(item)
            if len(unique) == keep:
                break
    return unique
