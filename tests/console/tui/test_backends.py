"""The fleet backends on real processes: agent probing with psutil, starting and stopping the emulated cluster."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import psutil
import pytest

from console.cluster.local import read_state
from console.errors import ConsoleError
from console.fleet.ssh import LinkState, NodeStatus
from console.process_id import ProcessId
from console.services.agent_probe import AgentProbe, LocalAgent
from console.services.backend import ProfileRequest, Reading
from console.services.backend_local import LocalBackend

BURN = "import time\nend = time.time() + 60\nwhile time.time() < end: pass"


async def test_probe_reads_each_process_and_reports_one_that_died():
    busy = subprocess.Popen([sys.executable, "-c", BURN])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        agents = [LocalAgent("busy", busy.pid, 1, memory_budget=2**30), LocalAgent("idle", idle.pid, 2)]
        probe = await AgentProbe.open(0.2)
        probe.read(agents)  # primes the CPU counters
        # Relative, not absolute, and read again for a few seconds: on a loaded machine the busy loop may get
        # only a small share of a core in one 0.6 s window.
        for _ in range(10):
            await asyncio.sleep(0.6)
            first = {item.node: item for item in probe.read(agents)}
            assert all(isinstance(item, Reading) for item in first.values())
            busy_cpu, idle_cpu = first["busy"].agent.cpu_percent, first["idle"].agent.cpu_percent
            if busy_cpu > 5 * max(idle_cpu, 1.0):
                break
        assert busy_cpu > 5 * max(idle_cpu, 1.0), (busy_cpu, idle_cpu)
        assert first["busy"].agent.pid == busy.pid and first["busy"].agent.rss_bytes > 2**20
        assert len(first["busy"].sample.cpus) == psutil.cpu_count()  # the host the node runs on
        idle.kill()
        idle.wait()
        second = {item.node: item for item in probe.read(agents)}
        assert isinstance(second["idle"], NodeStatus) and second["idle"].state is LinkState.UNREACHABLE
        assert f"agent process {idle.pid} is gone" in second["idle"].reason
        assert isinstance(second["busy"], Reading)
        await probe.close()
    finally:
        for process in (busy, idle):
            process.kill()
            process.wait()


async def test_without_a_cluster_and_without_nodes_asked_the_backend_says_how_to_start_one():
    with pytest.raises(ConsoleError, match="no local cluster is up: start one with `litesrl cluster up"):
        await LocalBackend(None).start()


async def test_backend_adopts_the_running_cluster_and_leaves_it_running(cluster):
    state = read_state()
    backend = LocalBackend(None)
    await backend.start()
    assert [n.name for n in backend.nodes] == [a.name for a in state.agents]
    assert backend.nodes[0].memory_budget == 1_500_000_000 and backend.cluster_argument == "local"
    assert not backend.owns_cluster
    updates = backend.updates(0.2)
    seen = {}
    async for item in updates:
        seen[item.node] = item
        if len(seen) == len(state.agents):
            break
    await updates.aclose()
    assert all(isinstance(item, Reading) and item.agent.pid == a.pid for item, a in zip(seen.values(), state.agents))
    await backend.close()
    assert all(agent.alive() for agent in state.agents)


async def test_profiling_an_unknown_node_is_refused(cluster):
    backend = LocalBackend(None)
    await backend.start()
    with pytest.raises(ConsoleError, match="no node 'node-9' in the local cluster"):
        await backend.profile("node-9", ProfileRequest(), print)


@pytest.mark.slow
async def test_local_n_starts_the_cluster_when_none_is_up_and_stops_it_on_close():
    backend = LocalBackend(2, time_scale=0.05, memory_per_node="2GB")
    await backend.start()
    try:
        state = read_state()
        assert backend.owns_cluster and [a.name for a in state.agents] == ["node-1", "node-2"]
        assert state.owner == ProcessId.me()  # a later console treats it as a leftover once this one is gone
        assert all(agent.alive() for agent in state.agents)
        assert backend.title == "local emulated cluster (2 × tx2, time ×0.05)"
    finally:
        await backend.close()
    assert read_state() is None
    assert not any(agent.alive() for agent in state.agents)
