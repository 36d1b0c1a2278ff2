"""Dynamic chains over six real agent processes (paper Fig. 4b, 3/2/1 replicas): every mini-batch exactly once per
epoch, replicas averaged over the network with uneven counts; fixed mode forms the paper's two chains."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.dhp.channel import NodeChannel
from engine.dhp.checkpoints import assemble
from engine.dhp.events import read_events
from engine.dhp.sync import average_round, fetch_state, push_state
from engine.pretrain import CHECKPOINT_NAME
from tests.engine.dhp.coordinator_helpers import MODEL, PROFILE, coordinator_for, iteration_batches, plan_for, settings
from tests.nodes.agent_procs import SECRET, make_data, start_agents

pytestmark = pytest.mark.slow

NAMES = [f"n{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def six(tmp_path_factory, data):
    agents = start_agents(tmp_path_factory.mktemp("agents"), NAMES, data=data)
    yield agents
    for agent in agents:
        agent.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


async def _channels(agents) -> dict[str, NodeChannel]:
    from nodes.client import connect_node

    channels = {}
    for agent in agents:
        link = await connect_node(agent.name, agent.host, agent.port, SECRET)
        channels[agent.name] = NodeChannel(link, lambda *_: None, lambda *_: None)
        await channels[agent.name].attach("test", 30)
    return channels


def _max_in_flight(path) -> int:
    flying, most = set(), 0
    for event in read_events(path):
        if event.TYPE == "chain_link" and event.stage == 0:
            flying.add(event.chain)
        elif event.TYPE == "chain_done":
            flying.discard(event.chain)
        most = max(most, len(flying))
    return most


async def test_dynamic_chains_train_every_batch_exactly_once_and_leave_replicas_averaged(six, tmp_path):
    run = settings(15, tmp_path / "out", mode="dynamic", average_every=5)
    events = tmp_path / "events.jsonl"
    coordinator = await coordinator_for(six, run, events)
    plan = plan_for(coordinator, "dynamic")
    assert [len(nodes) for nodes in plan.stages] == [3, 2, 1]
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()

    assert result.reason is None and result.step == 15
    batches = iteration_batches(events)
    assert Counter(batches) == Counter(range(15))  # 3 epochs of 5 batches, each batch once
    for epoch in range(3):
        assert sorted(b for b in batches if b // 5 == epoch) == list(range(epoch * 5, epoch * 5 + 5))
    assert _max_in_flight(events) >= 2, "dynamic chains should overlap"
    per_stage = Counter()
    for summary in result.per_node.values():
        per_stage[summary.stage] += summary.iterations
    assert per_stage == {0: 15, 1: 15, 2: 15}
    kinds = [event.TYPE for event in read_events(events)]
    assert kinds.count("averaging") == 6  # start and done after iterations 5, 10 and 15

    # After the last averaging every replica of a stage holds the same weights, which the checkpoint assembles.
    channels = await _channels(six)
    states = [[await fetch_state(channels[node], 30) for node in nodes] for nodes in plan.stages]
    for replicas in states:
        for other in replicas[1:]:
            for key in replicas[0]:
                assert torch.equal(other[key], replicas[0][key]), key
    stored = load_checkpoint(tmp_path / "out" / CHECKPOINT_NAME)
    whole = assemble(MODEL, plan.model_cuts, [replicas[0] for replicas in states])
    for key, value in whole.items():
        assert torch.equal(stored["model"][key], value), key
    await asyncio.gather(*(channel.close() for channel in channels.values()))


async def test_averaging_over_the_network_with_uneven_replica_counts(six, tmp_path):
    run = settings(3, None, mode="dynamic", average_every=0)
    coordinator = await coordinator_for(six, run, tmp_path / "events.jsonl")
    plan = plan_for(coordinator, "dynamic")
    await coordinator.run(plan, PROFILE)  # leaves each node with its stage assigned
    await coordinator.close()

    channels = await _channels(six)
    previous = [await fetch_state(channels[nodes[0]], 30) for nodes in plan.stages]
    sent: dict[str, dict] = {}
    for s, nodes in enumerate(plan.stages):
        for r, node in enumerate(nodes):  # replica r: floats shifted by r/100, BN counters advanced by r + 1
            state = {k: (v + (r + 1) / 100 if v.is_floating_point() else v + r + 1) for k, v in previous[s].items()}
            await push_state(channels[node], state, 30)
            sent[node] = state
    averaged, _, _ = await average_round([[channels[n] for n in nodes] for nodes in plan.stages], previous, 30)

    for s, nodes in enumerate(plan.stages):
        count = len(nodes)  # 3, 2, 1
        for node in nodes:
            held = await fetch_state(channels[node], 30)
            for key, before in previous[s].items():
                if before.is_floating_point():
                    expected = torch.stack([sent[n][key] for n in nodes]).mean(dim=0)
                    torch.testing.assert_close(held[key], expected, msg=key)
                else:  # num_batches_tracked: previous + every replica's new batches
                    assert held[key].item() == before.item() + sum(range(1, count + 1)), key
                assert torch.equal(held[key], averaged[s][key]), key
    await asyncio.gather(*(channel.close() for channel in channels.values()))


async def test_fixed_mode_forms_two_chains_of_three(six, tmp_path):
    run = settings(6, None, mode="fixed", average_every=3)
    events = tmp_path / "events.jsonl"
    coordinator = await coordinator_for(six, run, events)
    plan = plan_for(coordinator, "fixed")
    assert [len(nodes) for nodes in plan.stages] == [2, 2, 2] and plan.idle == ()
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    assert result.reason is None and Counter(iteration_batches(events)) == Counter(range(6))
    lanes = {tuple(event.nodes) for event in read_events(events) if event.TYPE == "chain_done"}
    assert lanes == {tuple(nodes[0] for nodes in plan.stages), tuple(nodes[1] for nodes in plan.stages)}


async def test_earliest_finish_policy_runs_every_batch_once(six, tmp_path):
    run = settings(6, None, mode="dynamic", policy="earliest_finish", average_every=0, stall_timeout=20)
    events = tmp_path / "events.jsonl"
    coordinator = await coordinator_for(six, run, events)
    result = await coordinator.run(plan_for(coordinator, "dynamic"), PROFILE)
    await coordinator.close()
    assert result.reason is None and Counter(iteration_batches(events)) == Counter(range(6))
