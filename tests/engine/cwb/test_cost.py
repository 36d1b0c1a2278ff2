"""The cost model: stage memory with cut buffers, busy time with transfers, eq. 8 and eq. 9 on hand-checked numbers."""

import math
from dataclasses import replace

import pytest

from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import NodeSpec, identical_nodes
from engine.cwb.profile_format import LayerProfile, Profile
from engine.cwb.search import search
from engine.cwb.transfer import Network
from engine.errors import PartitionError, ProfileError
from tests.engine.cwb.synthetic import settings


def _profile(compute_ms, state=1000, out=0):
    layers = tuple(
        LayerProfile(f"L{i}", ms / 4, ms * 3 / 4, state // 10, state // 10, state // 10, state - 3 * (state // 10), out)
        for i, ms in enumerate(compute_ms)
    )
    return Profile(settings=settings(), layers=layers)


def test_busy_objective_is_minus_log_variance_of_busy_shares():
    model = CostModel(_profile([100, 200, 300]), Network(bandwidth=1e6), objective="busy")
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
    assert c.cut_transfer_ms == pytest.approx((200,))
    # Paper objective: shares are compute / T = 100/800, 500/800 (sum 3/4 = 1 - tau).
    assert [s.share for s in c.stages] == pytest.approx([1 / 8, 5 / 8])
    assert c.transfer_share == pytest.approx(0.25)
    assert c.utilisation_index == pytest.approx(-math.log((1 / 8 - 1 / 2) ** 2 + (5 / 8 - 1 / 2) ** 2))
    busy = CostModel(model.profile, model.network, objective="busy").evaluate((0,), identical_nodes(2, 10**9), "cwb")
    assert sum(s.share for s in busy.stages) == pytest.approx(1.0)
    assert busy.utilisation_index == pytest.approx(math.log(16))  # shares 1/4, 3/4: variance 1/16


def test_paper_e_of_a_hand_computed_three_partition_chain():
    # Compute 100/200/300 ms; cut after L0 sends 50 kB, after L1 100 kB, at 1 MB/s: 50 and 100 ms per crossing.
    layers = list(_profile([100, 200, 300]).layers)
    layers[0] = LayerProfile("L0", 25, 75, 100, 100, 100, 700, 50_000)
    layers[1] = LayerProfile("L1", 50, 150, 100, 100, 100, 700, 100_000)
    model = CostModel(Profile(settings=settings(), layers=tuple(layers)), Network(bandwidth=1e6))
    c = model.evaluate((0, 1), identical_nodes(3, 10**9), "cwb")
    t_all = 600 + 2 * 50 + 2 * 100  # Algorithm 2 line 9: all compute + T_ta + T_tb
    assert c.minibatch_ms == pytest.approx(t_all)
    expected = -math.log(sum((tp / t_all - 1 / 3) ** 2 for tp in (100, 200, 300)))  # T_p^i: own compute only
    assert c.utilisation_index == pytest.approx(expected)
    assert c.utilisation_index == pytest.approx(-math.log((1 / 9 - 1 / 3) ** 2 + (2 / 9 - 1 / 3) ** 2 + 0))


def test_padding_a_light_stage_with_a_large_transfer_loses_under_the_paper_objective():
    # L0 and L1 output a big map (400 ms per crossing at 1 MB/s), L2 a tiny one. Compute 600/200/200/400.
    layers = [LayerProfile(f"L{i}", ms / 4, ms * 3 / 4, 100, 100, 100, 700, out)
              for i, (ms, out) in enumerate([(600, 400_000), (200, 400_000), (200, 1000), (400, 0)])]
    model = CostModel(Profile(settings=settings(), layers=tuple(layers)), Network(bandwidth=1e6))
    nodes = identical_nodes(3, 10**9)
    padded, lean = (0, 1), (0, 2)
    # Padded: the 200 ms stage sends 400 + 400 ms, so every node is busy 1000 ms: perfect under "busy".
    busy = CostModel(model.profile, model.network, objective="busy")
    assert [s.busy_ms for s in busy.evaluate(padded, nodes, "cwb").stages] == pytest.approx([1000, 1000, 1000])
    assert busy.evaluate(padded, nodes, "cwb").utilisation_index > busy.evaluate(lean, nodes, "cwb").utilisation_index
    # The paper's E sees compute 600/200/600 of T = 3000 against 600/400/400 of T = 2202.
    assert model.evaluate(padded, nodes, "cwb").utilisation_index < model.evaluate(lean, nodes, "cwb").utilisation_index
    assert search(model, nodes, 3, top=1).best.cuts == lean


def test_unknown_objective_or_accounting_names_the_choices():
    with pytest.raises(PartitionError, match="unknown objective 'fast'; choose one of paper, busy"):
        CostModel(_profile([1, 2]), Network(bandwidth=1e6), objective="fast")
    with pytest.raises(PartitionError, match="choose one of exact, paper"):
        CostModel(_profile([1, 2]), Network(bandwidth=1e6), accounting="guess")


def test_paper_accounting_sums_the_paper_count_without_cut_buffers():
    layers = tuple(replace(layer, paper_bytes=5000 + i) for i, layer in enumerate(_profile([1, 1, 1], out=70).layers))
    model = CostModel(Profile(settings=settings(), layers=layers), Network(bandwidth=1e6), accounting="paper")
    assert model.memory_bytes(0, 2) == 10001
    assert model.memory_bytes(1, 3) == 10003
    with pytest.raises(ProfileError, match="no paper memory count"):
        CostModel(_profile([1, 2]), Network(bandwidth=1e6), accounting="paper")


def test_data_work_adds_to_stage_one_only():
    profile = replace(_profile([100, 200]), data_ms=40.0)
    c = CostModel(profile, Network(bandwidth=1e6)).evaluate((0,), identical_nodes(2, 10**9), "cwb")
    assert [s.compute_ms for s in c.stages] == pytest.approx([140, 200])


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
