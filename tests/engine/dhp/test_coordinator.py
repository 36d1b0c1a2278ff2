"""Transparency (paper 3.2.2): one fixed chain of three real agent processes trains exactly the single-process
model; its checkpoint is an engine checkpoint `litesrl eval` loads; a stopped run resumes from it."""

from __future__ import annotations

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.dhp.events import read_events
from engine.evaluate import load_encoder
from engine.pretrain import CHECKPOINT_NAME
from tests.engine.dhp.coordinator_helpers import (
    MODEL,
    PROFILE,
    coordinator_for,
    iteration_batches,
    plan_for,
    reference_training,
    settings,
)
from tests.nodes.agent_procs import make_data, start_agents

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory, data):
    agents = start_agents(tmp_path_factory.mktemp("agents"), ["a", "b", "c"], data=data)
    yield agents
    for agent in agents:
        agent.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _assert_same(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(actual[key], value, rtol=1e-4, atol=1e-5, msg=key)


async def test_one_fixed_chain_equals_single_process_training(chain, data, tmp_path):
    run = settings(7, tmp_path / "out", mode="fixed", average_every=0)
    coordinator = await coordinator_for(chain, run, tmp_path / "events.jsonl")
    plan = plan_for(coordinator, "fixed")
    assert plan.stages == (("a",), ("b",), ("c",)) and plan.cut_names == ("maxpool", "layer2_0")
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()

    assert result.reason is None and result.step == 7 and result.completed == 7
    assert iteration_batches(tmp_path / "events.jsonl") == list(range(7))  # one chain: in order, across an epoch
    assert {node: s.iterations for node, s in result.per_node.items()} == {"a": 7, "b": 7, "c": 7}
    stored = load_checkpoint(tmp_path / "out" / CHECKPOINT_NAME)
    assert stored["kind"] == "dhp" and stored["step"] == 7
    _assert_same(stored["model"], reference_training(run, data, 7))

    # `litesrl eval` reads it: the engine's loader rebuilds the model with the run's normalisation.
    model, norm, name = load_encoder(str(tmp_path / "out" / CHECKPOINT_NAME), MODEL, 0)
    assert name.endswith("(step 7)") and torch.allclose(norm[0], torch.tensor(result.normalisation[0]))
    assert stored["pretrain_config"]["augment"]["size"] == 32


async def test_a_stopped_run_resumes_from_its_checkpoint(chain, data, tmp_path):
    run = settings(6, tmp_path / "out", mode="fixed", average_every=3, checkpoint_every=3)
    events = tmp_path / "events.jsonl"
    coordinator = await coordinator_for(chain, run, events)
    plan = plan_for(coordinator, "fixed")

    def stop_at_three(event):
        if event.TYPE == "iteration" and coordinator.step == 3:
            coordinator.request_stop("operator pressed stop")

    coordinator.events.subscribe(stop_at_three)
    stopped = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    assert stopped.reason == "operator pressed stop at iteration 3"
    assert stopped.checkpoint is not None and load_checkpoint(stopped.checkpoint)["step"] == 3

    again = await coordinator_for(chain, run, tmp_path / "events2.jsonl")
    plan = plan_for(again, "fixed", cuts=list(plan.cuts))
    result = await again.run(plan, PROFILE, resume=True)
    await again.close()
    assert (result.step, result.completed, result.reason) == (6, 3, None)
    assert iteration_batches(tmp_path / "events2.jsonl") == [3, 4, 5]
    # The checkpoint carries each stage's SGD momentum: the resumed run is the uninterrupted one.
    stored = load_checkpoint(tmp_path / "out" / CHECKPOINT_NAME)
    _assert_same(stored["model"], reference_training(run, data, 6))
    assert [e.TYPE for e in read_events(tmp_path / "events2.jsonl")][0] == "run_started"


async def test_resume_refuses_a_checkpoint_of_other_settings(chain, tmp_path):
    run = settings(2, tmp_path / "out", mode="fixed", average_every=0)
    coordinator = await coordinator_for(chain, run, tmp_path / "events.jsonl")
    await coordinator.run(plan_for(coordinator, "fixed"), PROFILE)
    await coordinator.close()
    other = settings(4, tmp_path / "out", mode="fixed", average_every=0)
    coordinator = await coordinator_for(chain, other, tmp_path / "events2.jsonl")
    with pytest.raises(Exception, match="was written with other optim settings"):
        await coordinator.run(plan_for(coordinator, "fixed"), PROFILE, resume=True)
    await coordinator.close()


async def test_a_fixed_chain_hands_on_without_asking_the_coordinator(chain, tmp_path):
    """Fixed chains know their next hops from ASSIGN: no NEXT_HOP round trip, yet every hop is still recorded."""
    sent: list[tuple[str, str, dict]] = []
    for mode in ("fixed", "dynamic"):
        run = settings(3, None, mode=mode, average_every=0)
        coordinator = await coordinator_for(chain, run, tmp_path / f"events-{mode}.jsonl")
        for name, channel in coordinator.channels.items():
            def recording(op, header=None, _send=channel.send, _name=name, _mode=mode):
                sent.append((_mode, _name, op.value))
                return _send(op, header)
            channel.send = recording
        result = await coordinator.run(plan_for(coordinator, mode), PROFILE)
        await coordinator.close()
        assert result.reason is None and result.completed == 3
        links = [(e.chain, e.stage, e.from_node, e.to_node) for e in read_events(tmp_path / f"events-{mode}.jsonl")
                 if e.TYPE == "chain_link"]
        assert sorted(links) == [(c, s, f, t) for c in (1, 2, 3) for s, f, t in ((0, None, "a"), (1, "a", "b"), (2, "b", "c"))]
    hops = {mode: [(node, op) for m, node, op in sent if m == mode and op == "next_hop"] for mode in ("fixed", "dynamic")}
    assert hops["fixed"] == []
    assert hops["dynamic"] == [("a", "next_hop"), ("b", "next_hop")] * 3
    starts = [node for m, node, op in sent if m == "fixed" and op == "start"]
    assert starts == ["a"] * 3
