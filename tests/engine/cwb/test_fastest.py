"""The fastest plan: simulated cut x replicas x mode x policy search, its baselines, and racks that grow by board kind."""

from __future__ import annotations

import random
import time

import pytest

from assets import asset_path
from engine.cwb import replicas as replica_module
from engine.cwb.nodes_spec import NodeSpec, identical_nodes, load_nodes_file
from engine.cwb.planner import plan_partitions
from engine.cwb.profile_format import load_profile
from engine.cwb.replicas import plan_replicas
from engine.cwb.transfer import Network

GIB3 = 3 * 2**30
NETWORK = Network(bandwidth=125e6)


def tx2():
    return load_profile(asset_path("profiles/tx2-resnet18.json"))


def test_six_tx2s_with_the_papers_accounting_recommend_dynamic_chains_on_the_papers_cut():
    planned = plan_partitions(tx2(), identical_nodes(6, GIB3), NETWORK, accounting="paper", recommend=True)
    rec = planned.recommendation
    best = rec.recommended
    assert planned.partitions == 3
    assert best.cut_names == ("maxpool", "layer1_1") and best.replicas == (3, 2, 1) and best.mode == "dynamic"
    by_key = {(o.method, o.mode): o for o in rec.baselines}
    assert by_key[("paper", "fixed")].replicas == (2, 2, 2) and by_key[("paper", "dynamic")].replicas == (3, 2, 1)
    assert {o.method for o in rec.baselines} == {"paper", "pipedream", "gpipe"}
    fitting = [o.predicted_iteration_ms for o in rec.baselines if o.fits and o.predicted_iteration_ms]
    assert best.predicted_iteration_ms <= min(fitting)
    # Dynamic chains beat the two fixed chains of Table 5 in simulation, as Table 6 does.
    assert best.predicted_iteration_ms < by_key[("paper", "fixed")].predicted_iteration_ms
    data = rec.to_dict()
    assert set(data["recommended"]) >= {"cut_after", "replicas", "mode", "policy", "predicted_iteration_ms"}
    assert all({"method", "predicted_iteration_ms"} <= set(entry) for entry in data["baselines"])


def test_the_recommendation_is_never_slower_than_a_fitting_baseline_and_may_leave_the_best_e_cut():
    planned = plan_partitions(tx2(), identical_nodes(6, 3 * 10**9), NETWORK, partitions=3, recommend=True)
    rec = planned.recommendation
    fitting = [o for o in rec.baselines if o.fits and o.predicted_iteration_ms is not None]
    assert {o.method for o in fitting} == {"paper", "pipedream", "gpipe"}
    assert all(rec.recommended.predicted_iteration_ms <= o.predicted_iteration_ms for o in fitting)
    assert rec.recommended.predicted_iteration_ms < min(o.predicted_iteration_ms for o in fitting)
    assert rec.simulated >= len(fitting)


def test_greedy_replicas_equal_the_enumeration_for_one_board_kind(monkeypatch):
    rng = random.Random(4)
    for _ in range(20):
        n = rng.randint(2, 4)
        work = [rng.uniform(100, 1500) for _ in range(n)]
        cut = [rng.uniform(0, 900) for _ in range(n - 1)]
        pool = identical_nodes(rng.randint(n, 8), 10**9)
        exact = plan_replicas(work, [1] * n, cut, pool).best
        greedy = plan_replicas(work, [1] * n, cut, pool, limit=0).best
        assert greedy.iteration_ms == pytest.approx(exact.iteration_ms)


def _rack(tmp_path, kinds):
    text = "".join(
        f'[[nodes]]\nname = "{name}"\ncount = {count}\nboard = "{name}"\nspeed = {speed}\nmemory_budget = "{memory}"\n\n'
        for name, count, speed, memory in kinds
    )
    path = tmp_path / "rack.toml"
    path.write_text(text)
    return load_nodes_file(path).nodes


def test_twenty_boards_of_three_kinds_plan(tmp_path):
    nodes = _rack(tmp_path, [("tx2", 12, 1.0, "3GiB"), ("xavier-nx", 6, 1.27, "6GiB"), ("orin", 2, 8.0, "24GiB")])
    planned = plan_partitions(tx2(), nodes, NETWORK, accounting="paper", partitions=3, recommend=True)
    assert planned.replicas is not None and sum(planned.replicas.best.replicas) + len(planned.replicas.best.idle) == 20
    assert planned.recommendation.recommended.fits


@pytest.mark.slow
def test_a_48_board_rack_of_four_kinds_plans_quickly(tmp_path):
    nodes = _rack(tmp_path, [("tx2", 24, 1.0, "3GiB"), ("xavier-nx", 12, 1.27, "6GiB"), ("orin", 8, 8.0, "24GiB"),
                             ("nano", 4, 0.5, "2GiB")])
    start = time.process_time()  # CPU time: other programs on a shared test machine do not count
    planned = plan_partitions(tx2(), nodes, NETWORK, accounting="paper", recommend=True)
    elapsed = time.process_time() - start
    assert planned.recommendation.recommended.fits
    assert elapsed < 6.0  # the 2 s target is measured by benchmarks/cwb_rack.py on an idle machine


def test_replica_search_counts_kinds_not_boards():
    # 382200 assignments once failed here; per kind they are built greedily past the limit.
    pool = [NodeSpec(f"tx2-{i}", 3 * 10**9) for i in range(12)] + [NodeSpec(f"nx-{i}", 6 * 10**9, 1.27) for i in range(6)]
    pool += [NodeSpec(f"orin-{i}", 24 * 10**9, 8.0) for i in range(2)]
    report = plan_replicas([1000, 1100, 900], [2 * 10**9] * 3, [800, 800], pool)
    assert replica_module.MAX_ASSIGNMENTS < 382200 and report.best.iteration_ms > 0
    assert len({node for names in report.best.nodes for node in names} | set(report.best.idle)) == 20
