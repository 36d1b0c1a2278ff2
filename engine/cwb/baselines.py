"""Baseline partitioners from the pipeline-parallel literature, scored by the CWB cost model for comparison.

Both assume identical devices and ignore memory; their cuts are run on the first ``n`` nodes as
given and scored with ``engine.cwb.cost.CostModel`` so the CLI shows them beside CWB's answer
(E, bottleneck, whether every stage fits).

* ``pipedream`` — the straight-pipeline case of PipeDream's optimizer (Narayanan et al.,
  "PipeDream: Generalized Pipeline Parallelism for DNN Training", SOSP 2019, section 3.1): with one
  device per stage, ``A(j, k) = min_i max(A(i, k-1), 2 C_i, T(i..j))`` minimises the slowest of
  the stages' compute ``T`` and the cuts' communication ``2 C_i`` (activation forward + gradient
  back over the default link). ``O(q^2 n)`` time.
* ``gpipe`` — torchgpipe's ``balance_by_time``: the per-layer times go to the block partition
  algorithm of Bárány and Grinberg ("Block partitions of sequences", Israel J. Math. 206, 2015,
  arXiv:1308.2452), which moves one element at a time from a block next to the lightest block
  until the heaviest block exceeds the lightest by at most one (largest) element. Like
  torchgpipe we first map the times to [0, 1] by ``(x - min) / (max - min)``; torchgpipe states
  ``O(k n^3)`` for it. Communication is not considered.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.cwb.cost import Candidate, CostModel
from engine.cwb.nodes_spec import NodeSpec
from engine.errors import PartitionError


def pipedream(model: CostModel, nodes: Sequence[NodeSpec], partitions: int) -> Candidate:
    """PipeDream's DP on identical devices (speed of ``nodes[0]``), scored on ``nodes[:partitions]``."""
    order = _order(model, nodes, partitions)
    device = order[0]
    q = model.q
    best: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for k in range(partitions):
        last_end = q - (partitions - 1 - k)
        new: dict[int, tuple[float, tuple[int, ...]]] = {}
        for start, (slowest, cuts) in best.items():
            comm = 0.0
            if k > 0:
                comm = model.cut_ms(start - 1, device, device)
            first_end = q if k == partitions - 1 else start + 1
            for end in range(first_end, last_end + 1):
                value = (max(slowest, comm, model.compute_ms(start, end, device)), cuts + ((start - 1,) if k else ()))
                if end not in new or value < new[end]:
                    new[end] = value
        best = new
    return model.evaluate(best[q][1], order, "pipedream")


def gpipe(model: CostModel, nodes: Sequence[NodeSpec], partitions: int) -> Candidate:
    """torchgpipe's balance by time (Bárány-Grinberg block partition), scored on ``nodes[:partitions]``."""
    order = _order(model, nodes, partitions)
    times = [layer.compute_ms for layer in model.profile.layers]
    sizes = block_partition(times, partitions)
    if 0 in sizes:
        raise PartitionError(f"gpipe block partition left a stage empty ({sizes}); the layer times are degenerate")
    cuts, position = [], 0
    for size in sizes[:-1]:
        position += size
        cuts.append(position - 1)
    return model.evaluate(cuts, order, "gpipe")


def block_partition(sequence: Sequence[float], partitions: int) -> list[int]:
    """Block sizes from the Bárány-Grinberg procedure on ``sequence`` normalised to [0, 1].

    Start from equal-length blocks; repeat: let ``p`` be a heaviest block (weight ``M``) and ``m``
    the lightest block closest to it (weight ``m``, ties to the nearer one, as the paper says);
    stop when ``M <= m + 1``; else move into ``m`` the bordering element of its neighbour on
    ``p``'s side, and pick a new heaviest block once that neighbour was ``p``. Terminates by the
    paper's theorem; the step cap only guards against floating-point cycling.
    """
    n = len(sequence)
    if not 1 <= partitions <= n:
        raise PartitionError(f"cannot split {n} layers into {partitions} blocks")
    low, span = min(sequence), max(sequence) - min(sequence)
    values = [0.0 if span == 0 else (x - low) / span for x in sequence]
    splits = [n // partitions * (i + 1) for i in range(partitions - 1)] + [n]

    def size(i: int) -> float:
        return sum(values[(splits[i - 1] if i > 0 else 0) : splits[i]])

    heaviest, p = max((size(i), i) for i in range(partitions))
    for _ in range(n * n * partitions + 1):
        lightest = min(size(i) for i in range(partitions))
        if heaviest <= lightest + 1:
            return [b - a for a, b in zip([0] + splits[:-1], splits)]
        q = min((i for i in range(partitions) if size(i) == lightest), key=lambda i: abs(i - p))
        if p < q:
            h = q - 1
            splits[h] -= 1
        else:
            h = q + 1
            splits[q] += 1
        if h == p:
            heaviest, p = max((size(i), i) for i in range(partitions))
    raise PartitionError("gpipe block partition did not settle (floating-point cycling)")


def _order(model: CostModel, nodes: Sequence[NodeSpec], partitions: int) -> tuple[NodeSpec, ...]:
    if not 1 <= partitions <= model.q:
        raise PartitionError(f"partitions must be in 1..{model.q}, got {partitions}")
    if len(nodes) < partitions:
        raise PartitionError(f"{partitions} partitions need {partitions} nodes; only {len(nodes)} given")
    return tuple(nodes[:partitions])
