"""The real node agent, deployed as a wheel over SSH and started by the fleet's own ``agent_command``, answers a
coordinator on its port (reached through SSH port forwarding, since it binds loopback)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import psutil
import pytest

from console.fleet.agent import start_agent, stop_agent
from console.fleet.deploy import deploy_node
from console.fleet.fleet import Fleet
from console.fleet.forward import agent_endpoint
from console.fleet.inventory import load_inventory
from console.fleet.wheel import build_wheel
from engine.dhp.protocol import Op
from nodes.client import connect_node
from tests.console.fleet.sshd import free_port

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

SECRET = b"0123456789abcdef0123456789abcdef"


async def test_deployed_agent_starts_over_ssh_and_answers_on_its_port(sshd, trusted, tmp_path, make_inventory):
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory(node_extra='agent_bind = "127.0.0.1"'))
    workdir = tmp_path / "node-n1"
    async with Fleet(inv) as fleet:
        [deployed] = await fleet.each(lambda conn: deploy_node(conn, wheel))
        assert deployed.ok, deployed.error
        # The venv sees the node's python's torch (here this test venv's) through deploy's .pth.
        [site] = (workdir / "venv" / "lib").glob("python*/site-packages")

        [started] = await fleet.each(lambda conn: start_agent(conn, SECRET))
        assert started.ok, started.error
        pid = started.value.pid
        try:
            assert psutil.Process(pid).cmdline()[:3] == [str(workdir / "venv" / "bin" / "python"), "-m", "nodes.agent_main"]
            endpoint = await agent_endpoint(fleet.connection("n1"))
            assert endpoint.forwarded
            link = await connect_node("n1", endpoint.host, endpoint.port, SECRET, patience=60)
            await link.send(Op.ATTACH, {"req": 1, "run": "ssh-test"})
            attached = await link.recv(timeout=30)
            assert attached.op is Op.ATTACHED
            assert (attached.header["name"], attached.header["pid"]) == ("n1", pid)
            await link.send(Op.PING, {"n": 7})
            assert (await link.recv(timeout=10)).header == {"n": 7}
            link.close()
            await endpoint.close()
            log = (workdir / "agent-n1.log").read_text()
            assert f"agent n1 listening on 127.0.0.1:{inv.nodes[0].agent_port}" in log
            assert f"{site}/nodes/agent.py" in (await _agent_module(workdir))
        finally:
            [stopped] = await fleet.each(lambda conn: stop_agent(conn, timeout=10))
        assert stopped.value.action == "stopped"
        assert _exits(pid), f"agent pid {pid} still runs after stop"

        # Its port taken (another program, an agent of another cluster): start waits for the agent to listen,
        # sees it die instead (it imports torch first, which outlasts a fixed settle time) and says why.
        port = inv.nodes[0].agent_port
        with socket.create_server(("127.0.0.1", port)):
            [refused] = await fleet.each(lambda conn: start_agent(conn, SECRET))
    assert not refused.ok
    assert refused.error.startswith("the agent exited right after starting: ")
    assert refused.error.endswith(f"cannot listen on 127.0.0.1:{port}: Address already in use")


def _exits(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` is gone or a zombie (the fleet's check may see it mid-exit, environ already released)."""
    import time

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


async def _agent_module(workdir: Path) -> str:
    """Where the node's venv imports ``nodes.agent`` from (its own site-packages, not this checkout)."""
    import asyncio

    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # as in an SSH session
    process = await asyncio.create_subprocess_exec(
        str(workdir / "venv" / "bin" / "python"), "-c", "import nodes.agent; print(nodes.agent.__file__)",
        cwd=str(workdir), stdout=asyncio.subprocess.PIPE, env=env)
    out, _ = await process.communicate()
    return out.decode()


async def test_training_over_an_inventory_of_deployed_agents(sshd, trusted, tmp_path, known_hosts):
    from console.cluster.training import TrainJob, run_training
    from nodes.wire.auth import write_secret
    from tests.nodes.agent_procs import make_data

    data = make_data(tmp_path / "data")
    secret_file = tmp_path / "cluster.secret"
    write_secret(secret_file)
    lines = ["[cluster]", 'name = "bench"', f'known_hosts = "{known_hosts}"', f'identity_file = "{sshd.client_key}"',
             f'secret_file = "{secret_file}"']
    for name in ("b1", "b2"):
        lines += ["[[nodes]]", f'name = "{name}"', f'host = "{sshd.host}"', f"port = {sshd.port}", f'user = "{sshd.user}"',
                  'board = "generic"', 'memory_budget = "3GB"', f'python = "{sys.executable}"',
                  f'workdir = "{tmp_path / ("node-" + name)}"', f"agent_port = {free_port()}", f'data_path = "{data}"']
    inventory = tmp_path / "inventory.toml"
    inventory.write_text("\n".join(lines) + "\n")
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(inventory)
    async with Fleet(inv) as fleet:
        for outcome in await fleet.each(lambda conn: deploy_node(conn, wheel)):
            assert outcome.ok, outcome.error

    job = TrainJob(cluster=str(inventory), mode="dynamic", iterations=3, average_every=0, profile="tx2", partitions=2,
                   batch_size=4, image_size=32, load_size=32, out=tmp_path / "run")
    try:
        outcome = await run_training(job)
    finally:
        async with Fleet(inv) as fleet:
            stopped = await fleet.each(lambda conn: stop_agent(conn, timeout=10))
    assert outcome.result.reason is None and outcome.result.step == 3
    assert {len(nodes) for nodes in outcome.plan.stages} == {1}
    assert outcome.description == "bench: 2 board(s) over SSH" and outcome.time_scale is None
    assert [s.action for s in (o.value for o in stopped)] == ["stopped", "stopped"]
