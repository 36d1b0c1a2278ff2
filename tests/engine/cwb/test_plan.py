"""The cost model: stage memory with cut buffers, busy time with transfers, eq. 8 and eq. 9 on hand-checked numbers."""

import math

import pytest

from engine.cwb.nodes_spec import NodeSpec, identical_nodes
from engine.cwb.plan import CostModel
from engine.cwb.profile_format import LayerProfile, Profile
from engine.cwb.transfer import Network
from engine.errors import PartitionError
from tests.engine.cwb.synthetic import settings


def _profile(compute_ms, state=1000, out=0):
    layers = tuple(
        LayerProfile(f"L{i}", ms / 4, ms * 3 / 4, state // 10, state // 10, state // 10, state - 3 * (state // 10), out)
        for i, ms in enumerate(compute_ms)
    )
    return Profile(settings=settings(), layers=layers)


def test_e_without_transfers_is_minus_log_variance_of_shares():
    model = CostModel(_profile([100, 200, 300]), Network(bandwidth=1e6))
    c = model.evaluate((0, 1), identical_nodes(3, 10**9), "cwb")
    # busy 100/200/300, T = 600, shares 1/6, 1/3, 1/2: variance = (1/36 + 0 + 1/36) / 3 = 1/54
    assert [s.busy_ms for s in c.stages] == pytest.approx([100, 200, 300])
    assert c.minibatch_ms == pytest.approx(600)
    assert c.variance == pytest.approx(1 / 54)
    assert c.utilisation_index == pytest.approx(math.log(54))
    assert c.bottleneck_ms == pytest.approx(300)


def test_transfers_count_once_each_by_their_sender():
    # 100 kB at 1 MB/s = 100 ms per direction; the cut follows L0.
    model = CostModel(_profile([100, 200, 300], out=100_000), Network(bandwidth=1e6))
    c = model.evaluate((0,), identical_nodes(2, 10**9), "cwb")
    assert [s.send_ms for s in c.stages] == pytest.approx([100, 100])  # activation forward, gradient back
    assert [s.busy_ms for s in c.stages] == pytest.approx([200, 600])
    assert c.minibatch_ms == pytest.approx(800)  # eq. 8: 600 compute + 100 forward + 100 backward
    assert sum(s.share for s in c.stages) == pytest.approx(1.0)
    assert c.utilisation_index == pytest.approx(math.log(16))  # shares 1/4, 3/4: variance 1/16
    assert c.cut_transfer_ms == pytest.approx((200,))


def test_speed_divides_compute_time():
    model = CostModel(_profile([100, 200]), Network(bandwidth=1e6))
    c = model.evaluate((0,), (NodeSpec("tx2", 10**9), NodeSpec("orin", 10**9, speed=2.0)), "cwb")
    assert [s.compute_ms for s in c.stages] == pytest.approx([100, 100])
    assert c.utilisation_index == math.inf  # perfectly balanced
    assert c.to_dict()["utilisation_index"] is None and c.to_dict()["balanced"]


def test_stage_memory_holds_state_and_cut_buffers():
    model = CostModel(_profile([1, 1, 1, 1], state=1000, out=70), Network(bandwidth=1e6))
    assert model.memory_bytes(0, 4) == 4000  # whole model: no cuts, no buffers
    assert model.memory_bytes(0, 2) == 2000 + 2 * 70  # sends L1's output, receives its gradient
    assert model.memory_bytes(1, 3) == 2000 + 2 * 70 + 2 * 70  # buffers at both cuts
    assert model.memory_bytes(3, 4) == 1000 + 2 * 70
    c = model.evaluate((1,), identical_nodes(2, 2100), "cwb")
    assert [s.memory_bytes for s in c.stages] == [2140, 2140]
    assert not c.fits and not c.stages[0].fits
    assert model.evaluate((1,), identical_nodes(2, 2140), "cwb").fits


@pytest.mark.parametrize("cuts", [(2, 1), (3,), (-1,), (1, 1)])
def test_bad_cuts(cuts):
    model = CostModel(_profile([1, 1, 1, 1]), Network(bandwidth=1e6))
    with pytest.raises(PartitionError):
        model.evaluate(cuts, identical_nodes(len(cuts) + 1, 10**9), "cwb")
