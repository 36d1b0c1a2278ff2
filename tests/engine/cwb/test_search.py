"""CWB search: exact against brute force, memory filtering, mixed boards, and what to do when nothing fits."""

import itertools
import math
import random

import pytest

from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import NodeSpec, identical_nodes
from engine.cwb.profile_format import LayerProfile, Profile
from engine.cwb.search import min_peak_memory, node_orders, search, smallest_partitions
from engine.cwb.transfer import Network
from engine.errors import PartitionError
from tests.engine.cwb.synthetic import paper_like_profile, random_profile, settings


def _brute_force(model, nodes, partitions):
    """Every (cut set, order of interchangeable-node classes) that fits, best first."""
    linked = model.network.named_in_links()
    kind = lambda v: v.name if v.name in linked else (v.speed, v.memory_bytes)  # noqa: E731
    found, seen = [], set()
    for order in itertools.permutations(nodes, partitions):
        for cuts in itertools.combinations(range(model.q - 1), partitions - 1):
            key = (cuts, tuple(kind(v) for v in order))
            if key not in seen:
                seen.add(key)
                candidate = model.evaluate(cuts, order, "brute")
                if candidate.fits:
                    found.append(candidate)
    return sorted(found, key=lambda c: c.rank_key())


def _random_case(seed):
    rng = random.Random(seed)
    q = rng.randint(2, 8)
    partitions = rng.randint(1, min(q, 4))
    names = [f"v{i}" for i in range(rng.randint(partitions, partitions + 2))]
    links = ()
    if rng.random() < 0.3:
        links = tuple((a, b, rng.uniform(5e6, 2e8)) for a in names for b in names if a != b and rng.random() < 0.5)
    network = Network(rng.uniform(5e6, 2e8), rng.uniform(0, 3), links)
    nodes = [NodeSpec(n, int(rng.choice([0.8, 1.2, 2.0, 5.0]) * 1e9), rng.choice([1.0, 1.0, 2.0, 0.5])) for n in names]
    return CostModel(random_profile(q, seed), network), nodes, partitions, rng.choice([1, 3, 10])


@pytest.mark.parametrize("seed", range(120))
def test_search_equals_brute_force(seed):
    model, nodes, partitions, top = _random_case(seed)
    expected = _brute_force(model, nodes, partitions)
    if not expected:
        with pytest.raises(PartitionError, match="no cut of"):
            search(model, nodes, partitions, top=top)
        return
    result = search(model, nodes, partitions, top=top)
    assert result.feasible_count == len(expected)
    assert [c.variance for c in result.candidates] == pytest.approx([c.variance for c in expected[:top]], rel=1e-9)
    assert result.best.fits and all(c.fits for c in result.candidates)
    assert result.best.utilisation_index == max(c.utilisation_index for c in expected)


def test_memory_filter_rejects_the_unconstrained_best():
    model = CostModel(paper_like_profile(), Network(bandwidth=125e6, latency_ms=0.2))
    roomy = search(model, identical_nodes(3, 10**12), 3)
    tight = search(model, identical_nodes(3, 3 * 10**9), 3)
    assert not model.evaluate(roomy.best.cuts, identical_nodes(3, 3 * 10**9), "x").fits
    assert tight.best.cuts != roomy.best.cuts
    assert tight.best.utilisation_index < roomy.best.utilisation_index
    assert all(s.memory_bytes <= 3 * 10**9 for c in tight.candidates for s in c.stages)
    assert tight.feasible_count < roomy.feasible_count == math.comb(27, 2)


def test_fewest_partitions_follow_the_papers_reasoning():
    """About 6-7.6 GB of training state over 3 GB boards needs 3 of them (paper section 6.1)."""
    model = CostModel(paper_like_profile(), Network(bandwidth=125e6))
    assert smallest_partitions(model, identical_nodes(6, 3 * 10**9)) == 3
    assert smallest_partitions(model, identical_nodes(6, 8 * 10**9)) == 1
    assert smallest_partitions(model, identical_nodes(2, 3 * 10**9)) is None


def test_infeasible_names_the_smallest_budget_that_works():
    model = CostModel(paper_like_profile(), Network(bandwidth=125e6))
    peak, cuts = min_peak_memory(model, 3)
    assert max(model.memory_bytes(a, b) for a, b in zip((0, cuts[0] + 1, cuts[1] + 1), (cuts[0] + 1, cuts[1] + 1, 28))) == peak
    with pytest.raises(PartitionError, match=r"give every node at least 2\.\d\d GB, or use 4 partitions"):
        search(model, identical_nodes(6, peak - 1), 3)
    assert search(model, identical_nodes(3, peak), 3).best.fits
    with pytest.raises(PartitionError, match=r"or use 3 nodes of 3\.00 GB \(2 given\)"):
        search(model, identical_nodes(2, 3 * 10**9), 2)


def _uniform(q, compute_ms, state, out=0):
    layer = lambda i: LayerProfile(f"L{i}", compute_ms / 2, compute_ms / 2, 0, 0, 0, state, out)  # noqa: E731
    return Profile(settings=settings(), layers=tuple(layer(i) for i in range(q)))


def test_mixed_boards_beat_the_identical_device_answer():
    """An Orin twice as fast with 4x the memory should take twice the layers; assuming identical boards is wrong."""
    model = CostModel(_uniform(12, 100.0, 10**9), Network(bandwidth=125e6, latency_ms=0.5))
    tx2 = NodeSpec("tx2-1", 4 * 10**9), NodeSpec("tx2-2", 4 * 10**9)
    orin = NodeSpec("orin", 16 * 10**9, speed=2.0, board="Jetson AGX Orin")
    pool = (*tx2, orin)
    naive = search(model, identical_nodes(3, 4 * 10**9), 3).best  # 4/4/4 layers
    assert [s.last_layer - s.first_layer + 1 for s in naive.stages] == [4, 4, 4]
    naive_on_real = model.evaluate(naive.cuts, pool, "naive")
    mixed = search(model, pool, 3).best
    sizes = {s.node: s.last_layer - s.first_layer + 1 for s in mixed.stages}
    assert sizes["orin"] == 6 and sizes["tx2-1"] == sizes["tx2-2"] == 3
    assert mixed.utilisation_index > naive_on_real.utilisation_index + 3
    assert mixed.bottleneck_ms < naive_on_real.bottleneck_ms
    # The Orin's memory is what lets it hold six layers: with a TX2's budget no order balances.
    small_orin = (*tx2, NodeSpec("orin", 4 * 10**9, speed=2.0))
    assert search(model, small_orin, 3).best.utilisation_index < mixed.utilisation_index


def test_keep_order_runs_stages_on_the_given_nodes():
    model = CostModel(_uniform(6, 100.0, 1), Network(bandwidth=125e6))
    pool = (NodeSpec("fast", 10**9, speed=2.0), NodeSpec("slow", 10**9))
    kept = search(model, pool, 2, reorder=False)
    assert kept.orders_searched == 1 and kept.best.order == ("fast", "slow")
    assert search(model, pool, 2).orders_searched == 2


def test_interchangeable_nodes_are_tried_once():
    model = CostModel(_uniform(6, 1.0, 1), Network(bandwidth=1e6))
    assert len(node_orders(identical_nodes(6, 10**9), 3, model)) == 1
    mixed = (*identical_nodes(4, 10**9), NodeSpec("orin", 10**9, speed=2.0), NodeSpec("nx", 10**9, speed=1.5))
    # TTT; one of orin|nx in one of 3 places; both (2 orders) around a TX2 in one of 3 places
    assert len(node_orders(mixed, 3, model)) == 1 + 2 * 3 + 2 * 3
    linked = CostModel(_uniform(6, 1.0, 1), Network(bandwidth=1e6, links=(("node-1", "node-2", 2e6),)))
    assert len(node_orders(identical_nodes(3, 10**9), 3, linked)) == 6


@pytest.mark.parametrize(
    ("partitions", "nodes", "fragment"),
    [(0, 3, "at least 1"), (7, 9, "at least 7 layers"), (3, 2, "only 2 given")],
)
def test_bad_requests(partitions, nodes, fragment):
    model = CostModel(_uniform(6, 1.0, 1), Network(bandwidth=1e6))
    with pytest.raises(PartitionError, match=fragment):
        search(model, identical_nodes(nodes, 10**9), partitions)
