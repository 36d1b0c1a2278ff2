"""DHP run plans from CWB: the paper's accounting, a forced cut that does not fit, and the replicas asked for."""

from __future__ import annotations

import pytest

from assets import asset_path
from engine.cwb.nodes_spec import identical_nodes
from engine.cwb.profile_format import load_profile
from engine.cwb.transfer import Network
from engine.dhp.plan import plan_run
from engine.errors import PartitionError

PROFILE = load_profile(asset_path("profiles/tx2-resnet18.json"))
NETWORK = Network(bandwidth=125e6)
SIX = identical_nodes(6, 3 * 2**30)


def test_paper_accounting_plans_the_papers_run_and_the_node_checks_that_count():
    plan = plan_run(PROFILE, SIX, NETWORK, mode="dynamic", accounting="paper")
    assert plan.cut_names == ("maxpool", "layer1_1") and [len(s) for s in plan.stages] == [3, 2, 1]
    # What each node is told to check is the paper's count of its stage (no cut buffers), within 3 GiB.
    assert [m.total for m in plan.memory] == [plan.candidate.stages[k].memory_bytes for k in range(3)]
    assert all(m.total <= 3 * 2**30 for m in plan.memory) and sum(m.total for m in plan.memory) > 7.5e9
    fixed = plan_run(PROFILE, SIX, NETWORK, mode="fixed", accounting="paper")
    assert [len(s) for s in fixed.stages] == [2, 2, 2]


def test_replicas_asked_for_are_used_or_refused_with_the_fastest_ones():
    plan = plan_run(PROFILE, SIX, NETWORK, mode="dynamic", accounting="paper", cuts=(3, 5), replicas=(2, 2, 2))
    assert [len(s) for s in plan.stages] == [2, 2, 2]
    with pytest.raises(PartitionError, match="the fastest are 3/2/1"):
        plan_run(PROFILE, SIX, NETWORK, mode="dynamic", accounting="paper", cuts=(3, 5), replicas=(5, 2, 1))


def test_a_forced_cut_that_does_not_fit_names_the_stage_and_the_excess():
    with pytest.raises(PartitionError) as info:
        plan_run(PROFILE, SIX, NETWORK, mode="dynamic", accounting="paper", cuts=(4, 5))
    text = str(info.value)
    assert text.startswith("stage 1 (conv1 .. layer1_0) needs 3.87 GB (paper accounting)")
    assert "3.22 GB: 650.74 MB over" in text


def test_an_unknown_mode_names_the_choices():
    with pytest.raises(PartitionError, match="choose one of dynamic, fixed"):
        plan_run(PROFILE, SIX, NETWORK, mode="static")
