"""PipeDream DP and torchgpipe block partition: their own objectives on plain numbers, scored like CWB."""

import itertools
import random

import pytest

from engine.cwb.baselines import block_partition, gpipe, pipedream
from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import identical_nodes
from engine.cwb.search import search
from engine.cwb.transfer import Network
from engine.errors import PartitionError
from tests.engine.cwb.synthetic import paper_like_profile, random_profile


def test_block_partition_known_answers():
    assert block_partition([1, 2, 3, 4, 5, 6], 2) == [4, 2]  # torchgpipe's own test case
    assert block_partition([0, 0], 2) == [1, 1]
    assert block_partition([5] * 10, 3) == [3, 3, 4]
    with pytest.raises(PartitionError):
        block_partition([1], 2)


@pytest.mark.parametrize("seed", range(30))
def test_block_partition_meets_the_theorem(seed):
    """Bárány-Grinberg: heaviest - lightest block <= 1 on the [0, 1]-normalised sequence."""
    rng = random.Random(seed)
    values = [rng.uniform(0, 100) for _ in range(rng.randint(2, 30))]
    k = rng.randint(1, len(values))
    sizes = block_partition(values, k)
    assert sum(sizes) == len(values) and len(sizes) == k
    low, span = min(values), max(values) - min(values)
    normal = [(v - low) / span for v in values]
    bounds = list(itertools.accumulate([0] + sizes))
    weights = [sum(normal[a:b]) for a, b in zip(bounds, bounds[1:])]
    assert max(weights) <= min(weights) + 1 + 1e-9


@pytest.mark.parametrize("seed", range(20))
def test_pipedream_minimises_the_slowest_stage_or_cut(seed):
    rng = random.Random(seed)
    profile = random_profile(rng.randint(2, 8), seed)
    model = CostModel(profile, Network(bandwidth=rng.uniform(1e6, 1e8), latency_ms=0.3))
    n = rng.randint(1, min(4, model.q))
    nodes = identical_nodes(n, 10**12)

    def slowest(cuts):
        bounds = [0] + [c + 1 for c in cuts] + [model.q]
        stages = [model.compute_ms(a, b, nodes[0]) for a, b in zip(bounds, bounds[1:])]
        comms = [model.cut_ms(c, nodes[0], nodes[0]) for c in cuts]
        return max(stages + comms)

    best = min(slowest(c) for c in itertools.combinations(range(model.q - 1), n - 1))
    result = pipedream(model, nodes, n)
    assert result.method == "pipedream"
    assert slowest(result.cuts) == pytest.approx(best)


def test_baselines_ignore_memory_cwb_does_not():
    model = CostModel(paper_like_profile(), Network(bandwidth=125e6, latency_ms=0.2))
    nodes = identical_nodes(3, 3 * 10**9)
    for baseline in (pipedream(model, nodes, 3), gpipe(model, nodes, 3)):
        assert not baseline.fits  # both put too much of the activation-heavy front on node 1
    assert search(model, nodes, 3).best.fits


def test_gpipe_balances_compute():
    profile = random_profile(20, 3)
    model = CostModel(profile, Network(bandwidth=1e9))
    result = gpipe(model, identical_nodes(4, 10**12), 4)
    assert len(result.stages) == 4 and result.method == "gpipe"
    sizes = [s.last_layer - s.first_layer + 1 for s in result.stages]
    assert sizes == block_partition([layer.compute_ms for layer in profile.layers], 4)
