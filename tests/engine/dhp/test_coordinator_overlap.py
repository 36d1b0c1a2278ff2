"""Overlap (paper 3.3.2) on real agent processes: a stage-1 node builds its next batch while its chain runs on,
so an emulated board's data time leaves the chain; the same batches are trained either way."""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest
import torch

from engine.dhp.events import read_events
from tests.engine.dhp.coordinator_helpers import PROFILE, coordinator_for, iteration_batches, plan_for, settings
from tests.nodes.agent_procs import make_data, start_agents

pytestmark = pytest.mark.slow

DATA_MS = 3000.0
"""Board ms to build one batch: 0.3 s at the time scale below, about half a chain's 0.6 s."""


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    data = make_data(tmp_path_factory.mktemp("data"))
    agents = start_agents(tmp_path_factory.mktemp("agents"), ["a", "b", "c"], data=data, emulate={"time-scale": 0.1})
    yield agents
    for agent in agents:
        agent.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


async def _chain_seconds(agents, tmp_path, overlap: bool) -> tuple[list[float], list[int]]:
    run = settings(6, None, mode="fixed", average_every=0, emulate=True, overlap=overlap)
    events = tmp_path / f"events-{overlap}.jsonl"
    coordinator = await coordinator_for(agents, run, events)
    try:
        result = await coordinator.run(plan_for(coordinator, "fixed"), replace(PROFILE, data_ms=DATA_MS))
    finally:
        await coordinator.close()
    assert result.reason is None
    return [e.ms / 1000 for e in read_events(events) if e.TYPE == "chain_done"], iteration_batches(events)


async def test_the_next_batch_is_built_while_the_chain_runs(three, tmp_path):
    plain, plain_batches = await _chain_seconds(three, tmp_path, overlap=False)
    ahead, ahead_batches = await _chain_seconds(three, tmp_path, overlap=True)
    assert plain_batches == ahead_batches == list(range(6))
    # Without overlap every chain includes building its batch (0.3 s); with it only the first does.
    saved = statistics.median(plain[1:]) - statistics.median(ahead[1:])
    assert saved > 0.15, f"chains took {plain} s without overlap, {ahead} s with it"
    assert ahead[0] > statistics.median(ahead[1:]) + 0.15
