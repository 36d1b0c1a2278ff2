"""Replica plan: the paper's 3/2/1 for six TX2s, the dynamic-chain bound is reachable, mixed pools and memory."""

import pytest

from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import NodeSpec, identical_nodes
from engine.cwb.replicas import hold_times, plan_replicas, replicas_for
from engine.cwb.search import search
from engine.cwb.transfer import Network
from engine.errors import PartitionError
from tests.engine.cwb.synthetic import paper_like_profile

PAPER_STAGES_MS = [1036, 1140, 922]  # Table 6, average runtime per node of each partition
TABLE5_MS, TABLE6_MS = 3572, 2750  # average running time of one iteration (1000 iterations over the cluster)
# Table 5: two fixed chains took 3572 ms per iteration, so one chain took 2 x 3572 ms; the rest of
# that latency beyond the nodes' compute is transfer, about 1011 ms per crossing (4 per mini-batch).
CROSSING_MS = (2 * TABLE5_MS - sum(PAPER_STAGES_MS)) / 4


def test_hold_times_nest_the_later_stages():
    assert hold_times([1036, 1140, 922], [0, 0]) == pytest.approx([3098, 2062, 922])
    assert hold_times([10, 20], [5]) == pytest.approx([35, 25])


def test_paper_six_tx2s_get_three_two_one_without_transfer_cost():
    report = plan_replicas(PAPER_STAGES_MS, [1, 1, 1], [0, 0], identical_nodes(6, 3 * 10**9))
    assert report.best.replicas == (3, 2, 1)
    assert report.best.iteration_ms == pytest.approx(3098 / 3)
    assert report.plans[1].iteration_ms > report.best.iteration_ms  # the choice is strict
    assert report.fixed_chains == 2 and report.fixed_iteration_ms == pytest.approx(3098 / 2)


def test_paper_tables_5_and_6_with_calibrated_transfers():
    cut = 2 * CROSSING_MS  # activation forward + gradient back
    report = plan_replicas(PAPER_STAGES_MS, [1, 1, 1], [cut, cut], identical_nodes(6, 3 * 10**9))
    assert report.best.replicas == (3, 2, 1)
    assert report.fixed_iteration_ms == pytest.approx(TABLE5_MS)  # calibration point
    # Predicted from the same transfers, the dynamic chains land within 15% of the measured 2750 ms
    # (we predict ~3053 ms; the measured system also overlapped some transfers with compute).
    assert abs(report.best.iteration_ms - TABLE6_MS) / TABLE6_MS < 0.15
    assert report.best.iteration_ms < report.fixed_iteration_ms
    assert report.best.bottleneck == 1  # the two partition-2 nodes limit the rate, as their 406/594 split hints


@pytest.mark.parametrize(
    ("work", "cuts", "replicas"),
    [([1036, 1140, 922], [0, 0], (3, 2, 1)), ([1036, 1140, 922], [2022, 2022], (3, 2, 1)),
     ([50, 300, 20, 90], [7, 3, 11], (2, 3, 1, 1))],
)
def test_round_robin_schedule_reaches_the_predicted_rate(work, cuts, replicas):
    """Start mini-batch j at j * P on node j mod r_s of each stage: every hold nests in the one before, no node
    is double-booked, so the rate 1/P with P = max H_s / r_s (the prediction) is reached."""
    predicted = plan_replicas(work, [1] * len(work), cuts, identical_nodes(sum(replicas), 10**9))
    plan = next(p for p in predicted.plans if p.replicas == replicas)
    period = plan.iteration_ms
    holds = hold_times(work, cuts)
    forward = [w / 3 for w in work]  # any forward/backward split works
    # Stage s is held from when cut s-1's activation starts to cross, i.e. after stage s-1 received its
    # own input (half its in-cut) and ran its forward.
    offsets = [0.0]
    for s in range(1, len(work)):
        offsets.append(offsets[-1] + (cuts[s - 2] / 2 if s > 1 else 0.0) + forward[s - 1])
    free_at = {}
    for j in range(200):
        spans = [(j * period + offsets[s], j * period + offsets[s] + holds[s]) for s in range(len(work))]
        for s in range(1, len(work)):
            assert spans[s - 1][0] <= spans[s][0] and spans[s][1] <= spans[s - 1][1] + 1e-9  # nested
        for s, (start, end) in enumerate(spans):
            node = (s, j % replicas[s])
            assert free_at.get(node, -1e18) <= start + 1e-9, f"node {node} double-booked"
            free_at[node] = end
    assert period == pytest.approx(max(h / r for h, r in zip(holds, replicas)))


def test_mixed_pool_respects_memory_and_speed():
    pool = (*identical_nodes(4, 3 * 10**9), NodeSpec("orin", 12 * 10**9, speed=2.0))
    report = plan_replicas([1000, 1000, 500], [5 * 10**9, 2 * 10**9, 2 * 10**9], [10, 10], pool)
    assert report.best.nodes[0] == ("orin",)  # only the Orin holds stage 1's 5 GB
    assert all("orin" not in names for plan in report.plans for names in plan.nodes[1:])
    # Orin alone on stage 1 holds for its 500 ms + cut + the slowest TX2 path behind it (1000 + 10 + 500).
    assert report.best.iteration_ms == pytest.approx(500 + 10 + 1000 + 10 + 500)
    with pytest.raises(PartitionError, match="enough memory"):
        plan_replicas([1, 1], [10**12, 1], [0], identical_nodes(3, 10**9))


def test_replicas_for_a_searched_partition():
    model = CostModel(paper_like_profile(), Network(bandwidth=125e6, latency_ms=0.2))
    pool = identical_nodes(6, 3 * 10**9)
    best = search(model, pool, 3).best
    report = replicas_for(model, best, pool)
    assert sum(report.best.replicas) == 6 and report.best.replicas[0] >= report.best.replicas[-1]
    assert report.chain_latency_ms == pytest.approx(best.minibatch_ms)
    assert report.best.hold_ms[0] == pytest.approx(best.minibatch_ms)  # eq. 8's T is the chain latency
