"""The training model rebuilt from a DHP event stream: chains appear and vanish, counters, loss, faults."""

from __future__ import annotations

from console.services.training_state import TrainingState
from engine.dhp.events import (
    Averaging,
    ChainAborted,
    ChainDone,
    ChainLink,
    Iteration,
    NodeJoined,
    NodeLost,
    NodeState,
    NodeSummary,
    RunFinished,
    RunStarted,
)

STAGES = (("n1", "n2", "n3"), ("n4", "n5"), ("n6",))


def started() -> TrainingState:
    state = TrainingState()
    state.apply(RunStarted(0.0, "dynamic", "first_free", STAGES, 10, 4))
    return state


def run_chain(state: TrainingState, chain: int, batch: int, nodes: tuple[str, str, str], t: float) -> None:
    state.apply(ChainLink(t, chain, batch, 0, None, nodes[0]))
    state.apply(NodeState(t, nodes[0], 0, "busy"))
    state.apply(ChainLink(t + 0.1, chain, batch, 1, nodes[0], nodes[1]))
    state.apply(ChainLink(t + 0.2, chain, batch, 2, nodes[1], nodes[2]))


def test_run_started_lays_out_stages_and_idle_nodes():
    state = started()
    assert state.started and state.mode == "dynamic" and state.total == 10
    assert [state.nodes[n].stage for n in ("n1", "n4", "n6")] == [0, 1, 2]
    assert all(a.state == "idle" and a.iterations == 0 for a in state.nodes.values())


def test_links_appear_as_the_chain_forms_and_vanish_when_it_completes():
    state = started()
    run_chain(state, 7, 3, ("n2", "n5", "n6"), 1.0)
    hops = [(link.from_node, link.to_node, link.stage) for link in state.live_links]
    assert hops == [(None, "n2", 0), ("n2", "n5", 1), ("n5", "n6", 2)]
    assert state.nodes["n5"].batch == 3 and state.nodes["n5"].chain == 7
    state.apply(ChainDone(2.0, 7, 3, ("n2", "n5", "n6"), 0.9, 1000.0))
    state.apply(Iteration(2.0, 0, 3, 0.9, 1000.0, ("n2", "n5", "n6")))
    assert state.live_links == []
    assert [state.nodes[n].iterations for n in ("n2", "n5", "n6", "n1")] == [1, 1, 1, 0]
    assert state.completed == 1 and list(state.losses) == [0.9]


def test_two_chains_live_at_once_keep_their_own_links():
    state = started()
    run_chain(state, 1, 0, ("n1", "n4", "n6"), 1.0)
    state.apply(ChainLink(1.5, 2, 1, 0, None, "n2"))
    state.apply(ChainLink(1.6, 2, 1, 1, "n2", "n5"))
    assert set(state.links) == {1, 2} and len(state.live_links) == 5
    state.apply(ChainDone(2.0, 1, 0, ("n1", "n4", "n6"), 1.0, 900.0))
    assert [(link.chain, link.to_node) for link in state.live_links] == [(2, "n2"), (2, "n5")]


def test_idle_clears_the_batch_a_node_held():
    state = started()
    run_chain(state, 1, 0, ("n1", "n4", "n6"), 1.0)
    state.apply(NodeState(2.0, "n1", 0, "idle"))
    assert state.nodes["n1"].batch is None and state.nodes["n1"].state == "idle"


def test_throughput_counts_iterations_per_second_over_the_window():
    state = started()
    assert state.throughput() is None
    for i in range(5):
        state.apply(Iteration(10.0 + 0.5 * i, i, i, 1.0 - i / 10, 500.0, ("n1", "n4", "n6")))
    assert state.throughput() == 2.0


def test_averaging_and_faults_become_notes_and_a_lost_node_drops_its_chains():
    state = started()
    run_chain(state, 4, 2, ("n3", "n5", "n6"), 1.0)
    state.apply(Averaging(3.0, "start", 4))
    assert state.averaging
    state.apply(Averaging(3.5, "done", 4, 250.0))
    assert not state.averaging and state.averaging_rounds == 1
    state.apply(NodeLost(4.0, "n5", "connection reset", (2,)))
    assert state.nodes["n5"].state == "lost" and state.links == {}
    state.apply(NodeJoined(6.0, "n5", 1))
    assert state.nodes["n5"].state == "idle"
    texts = [note.text for note in state.notes]
    assert texts[0] == "replicas averaged at iteration 4 in 250 ms"
    assert texts[1] == "n5 lost: connection reset; requeued batch(es) 2"
    assert state.notes[1].level == "error"
    assert texts[2] == "n5 joined stage P2"


def test_a_stalled_chain_given_up_drops_its_links_and_leaves_a_warning():
    state = started()
    state.apply(ChainLink(1.0, 5, 4, 0, None, "n2"))
    state.apply(ChainLink(1.5, 5, 4, 1, "n2", "n4"))
    state.apply(ChainAborted(122.0, 5, 4, ("n2", "n4"), "no report for 120 s (chain reached n2, n4)"))
    assert 5 not in state.links
    assert state.notes[-1].level == "warning"
    assert state.notes[-1].text == ("chain 5 stalled and was given up: no report for 120 s (chain reached n2, n4); "
                                    "batch 4 requeued")


def test_run_finished_keeps_the_report_and_clears_links():
    state = started()
    run_chain(state, 1, 0, ("n1", "n4", "n6"), 1.0)
    state.apply(RunFinished(9.0, 10, 9.0, {"n1": NodeSummary(0, 4, 800.0)}, None))
    assert state.finished is not None and state.finished.iterations == 10 and state.live_links == []
    assert state.notes[-1].text == "finished: 10 iterations in 9.0 s"


def test_a_second_run_started_resets_everything():
    state = started()
    run_chain(state, 1, 0, ("n1", "n4", "n6"), 1.0)
    state.apply(Iteration(2.0, 0, 0, 1.0, 900.0, ("n1", "n4", "n6")))
    state.apply(RunStarted(0.0, "fixed", "first_free", (("n1", "n2"), ("n4", "n5")), 5, 0))
    assert state.completed == 0 and not state.links and not state.losses
    assert set(state.nodes) == {"n1", "n2", "n4", "n5"} and state.mode == "fixed"
