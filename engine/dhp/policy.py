"""Next-hop policies of the DHP chain scheduler: the paper's first free node, or SWARM-style earliest finish.

When a node of stage ``s`` finishes its forward, its chain needs a node of stage ``s+1``
(paper 3.3.2: "the node that first completes the computation searches for the available nodes
in the next layer"). Requests that cannot be served wait, in arrival order.

* ``first_free`` (the paper): the first free node in replica-list order (a deterministic tie-break);
  a request waits only when no node is free.
* ``earliest_finish`` (after SWARM parallelism, Ryabinin et al. 2023): each node ``v`` gets
  ``ready(v) = now`` when free, else ``max(now, since(v) + hold(v))``, and
  ``finish(v) = ready(v) + work(v)``, where ``since(v)`` is when ``v`` was last admitted to a
  chain, ``hold(v)`` its mean hold time (admission to backward done) and ``work(v)`` its mean
  forward + backward of one mini-batch. A request goes to the least ``finish`` (ties: a free node,
  then list order), which may be a busy fast node rather than a free slow one; the request then
  waits for it. Requests are planned in arrival order and each reserves its node, so the next one
  sees ``ready(v) + hold(v)``. A node without measurements takes the mean of its stage's measured
  nodes (0 ms of work, and an unknown, i.e. infinite, remaining hold when none is measured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

Policy = Literal["first_free", "earliest_finish"]
POLICIES: tuple[Policy, ...] = ("first_free", "earliest_finish")


def plan_hops(
    policy: Policy,
    nodes: Sequence[str],
    requests: int,
    *,
    busy_since: Mapping[str, float],
    now: float,
    hold_ms: Mapping[str, float],
    work_ms: Mapping[str, float],
) -> list[str | None]:
    """The node planned for each of ``requests`` waiting requests (arrival order) among a stage's ``nodes``.

    ``busy_since`` maps each busy node to the time (seconds, same clock as ``now``) it was admitted;
    free nodes are absent. None means no node (``first_free`` with every node taken). A planned
    node that is busy means "wait for it".
    """
    if policy == "first_free":
        free = iter([node for node in nodes if node not in busy_since])
        return [next(free, None) for _ in range(requests)]
    work = _estimates(work_ms, nodes, 0.0)
    hold = _estimates(hold_ms, nodes, float("inf"))
    ready = {
        node: 0.0 if node not in busy_since else max(0.0, (busy_since[node] - now) * 1000.0 + hold[node])
        for node in nodes
    }
    order = {node: index for index, node in enumerate(nodes)}
    plan: list[str | None] = []
    for _ in range(requests):
        best = min(nodes, key=lambda n: (ready[n] + work[n], ready[n] > 0, order[n]))
        plan.append(best)
        ready[best] += hold[best]
    return plan


def _estimates(table: Mapping[str, float], nodes: Sequence[str], default: float) -> dict[str, float]:
    known = [table[n] for n in nodes if n in table]
    fallback = sum(known) / len(known) if known else default
    return {n: table.get(n, fallback) for n in nodes}
