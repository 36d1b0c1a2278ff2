"""Faults with real agent processes on emulated boards: SIGKILL mid-run (dynamic: requeue, finish, rejoin after a
restart; fixed: a clear stop), a hung node (SIGSTOP) found by the heartbeat timeout, and a chain stalled by a lost
report, given up after the chain timeout."""

from __future__ import annotations

import asyncio
import re
import signal
from collections import Counter

import pytest
import torch

from engine.dhp.coordinator import Coordinator
from engine.dhp.events import EventLog, read_events
from engine.dhp.protocol import Op
from nodes.client import connect_node
from tests.engine.dhp.coordinator_helpers import PROFILE, coordinator_for, iteration_batches, plan_for, settings
from tests.nodes.agent_procs import SECRET, addresses, links, make_data, restart, start_agents, wait_ready

pytestmark = pytest.mark.slow

NAMES = [f"n{i}" for i in range(1, 7)]
EMULATED = {"time-scale": 0.1}
"""TX2 stage times x 0.1: every step lasts 70-130 ms, so a kill lands mid-chain."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def six(tmp_path_factory, data):
    agents = {a.name: a for a in start_agents(tmp_path_factory.mktemp("agents"), NAMES, data=data, emulate=EMULATED)}
    yield agents
    for agent in agents.values():
        agent.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _reconnect(six):
    async def reconnect(name: str):
        agent = six[name]
        return await connect_node(name, agent.host, agent.port, SECRET, 5.0)
    return reconnect


def _kill_when_busy(coordinator, six, victim: str, after: int, then=None):
    """SIGKILL ``victim`` the moment a chain reaches it, once ``after`` iterations are done."""
    killed = {}

    def watch(event):
        if not killed and event.TYPE == "chain_link" and event.to_node == victim and coordinator.step >= after:
            six[victim].kill()
            killed["batch"] = event.batch
            if then is not None:
                then()

    coordinator.events.subscribe(watch)
    return killed


async def test_sigkill_in_dynamic_mode_requeues_the_batch_finishes_and_the_restarted_node_rejoins(six, tmp_path):
    run = settings(36, None, mode="dynamic", average_every=12, emulate=True, rejoin_interval=0.3)
    events = tmp_path / "events.jsonl"
    coordinator = await coordinator_for(list(six.values()), run, events, reconnect=_reconnect(six))
    plan = plan_for(coordinator, "dynamic")
    victim = plan.stages[1][0]  # a stage-2 replica
    loop = asyncio.get_running_loop()
    restarts = []

    def restart_victim():  # the operator restarts the crashed agent while the run goes on
        six[victim] = restart(six[victim], wait=False)
        restarts.append(loop.run_in_executor(None, wait_ready, six[victim]))

    killed = _kill_when_busy(coordinator, six, victim, after=3, then=restart_victim)
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    await asyncio.gather(*restarts)

    assert result.reason is None and result.step == 36
    assert Counter(iteration_batches(events)) == Counter(range(36)), "a batch was lost or trained twice"
    log = read_events(events)
    [lost] = [e for e in log if e.TYPE == "node_lost"]
    assert lost.node == victim and lost.requeued == (killed["batch"],)
    joined = [i for i, e in enumerate(log) if e.TYPE == "node_joined" and e.node == victim]
    assert joined, "the restarted node did not rejoin"
    after = [e for e in log[joined[0]:] if e.TYPE == "chain_done" and victim in e.nodes]
    assert after, "the rejoined node got no work"


async def test_sigkill_in_fixed_mode_stops_the_run_with_a_report(six, tmp_path):
    run = settings(30, tmp_path / "out", mode="fixed", average_every=10, emulate=True)
    coordinator = await coordinator_for(list(six.values()), run, tmp_path / "events.jsonl")
    plan = plan_for(coordinator, "fixed")
    victim = plan.stages[2][1]  # the last stage of chain 2
    _kill_when_busy(coordinator, six, victim, after=2)
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    assert result.reason == f"fixed chain 2 lost node {victim!r}; a fixed chain cannot re-route (paper Fig. 4a)"
    assert 2 <= result.step < 30
    finished = read_events(tmp_path / "events.jsonl")[-1]
    assert finished.TYPE == "run_finished" and finished.reason == result.reason
    six[victim] = restart(six[victim])


async def test_a_hung_node_is_lost_after_the_heartbeat_timeout(six, tmp_path):
    run = settings(16, None, mode="dynamic", average_every=0, emulate=True, heartbeat_interval=0.3,
                   heartbeat_timeout=2.0)
    events = tmp_path / "events.jsonl"
    coordinator = await coordinator_for(list(six.values()), run, events)
    plan = plan_for(coordinator, "dynamic")
    victim = plan.stages[0][2]
    stopped = []

    def freeze(event):
        if not stopped and event.TYPE == "iteration" and coordinator.step >= 2:
            six[victim].process.send_signal(signal.SIGSTOP)
            stopped.append(True)

    coordinator.events.subscribe(freeze)
    try:
        result = await coordinator.run(plan, PROFILE)
    finally:
        six[victim].process.send_signal(signal.SIGCONT)
        await coordinator.close()
    assert result.reason is None and Counter(iteration_batches(events)) == Counter(range(16))
    [lost] = [e for e in read_events(events) if e.TYPE == "node_lost"]
    assert lost.node == victim and lost.reason.startswith("no answer for")


class _LosesOneReport:
    """A real node link that loses one FORWARD_DONE on the way (after ``keep`` of them got through)."""

    def __init__(self, link, keep: int) -> None:
        self.link, self.keep, self.lost_chain = link, keep, None

    def __getattr__(self, name):
        return getattr(self.link, name)

    async def recv(self, timeout=None):
        while True:
            message = await self.link.recv(timeout)
            if message.op is Op.FORWARD_DONE and self.lost_chain is None:
                if self.keep == 0:
                    self.lost_chain = message.header["chain"]
                    continue
                self.keep -= 1
            return message


async def test_a_chain_whose_report_is_lost_is_given_up_and_its_batch_trained_once(six, tmp_path):
    run = settings(12, None, mode="dynamic", average_every=6, emulate=True, chain_timeout=1.5)
    events = tmp_path / "events.jsonl"
    opened = await links(list(six.values()))
    probe = Coordinator(opened, addresses(list(six.values())), run)
    await probe.attach()
    victim = plan_for(probe, "dynamic").stages[0][0]
    await probe.close()
    opened = await links(list(six.values()))
    opened[victim] = lossy = _LosesOneReport(opened[victim], keep=1)
    coordinator = Coordinator(opened, addresses(list(six.values())), run, events=EventLog(events))
    await coordinator.attach()
    result = await coordinator.run(plan_for(coordinator, "dynamic"), PROFILE)
    await coordinator.close()

    assert lossy.lost_chain is not None, "the test lost no report"
    assert result.reason is None and Counter(iteration_batches(events)) == Counter(range(12))
    log = read_events(events)
    [aborted] = [e for e in log if e.TYPE == "chain_aborted"]
    assert aborted.chain == lossy.lost_chain and aborted.nodes == (victim,)
    assert re.fullmatch(rf"no report for [\d.]+ s \(chain reached {victim}\)", aborted.reason), aborted.reason
    assert not [e for e in log if e.TYPE == "node_lost"], "a stalled chain is not a lost node"
    later = [e for e in log[log.index(aborted):] if e.TYPE == "chain_done" and victim in e.nodes]
    assert later, "the node of the stalled chain got no more work"
