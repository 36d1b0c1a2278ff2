"""The real node agent, deployed as a wheel over SSH and started by the fleet's own ``agent_command``, answers a
coordinator on its port (reached through SSH port forwarding, since it binds loopback)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
import torch

from console.fleet.agent import start_agent, stop_agent
from console.fleet.deploy import deploy_node
from console.fleet.fleet import Fleet
from console.fleet.forward import agent_endpoint
from console.fleet.inventory import load_inventory
from console.fleet.wheel import build_wheel
from engine.dhp.protocol import Op
from nodes.client import connect_node

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

SECRET = b"0123456789abcdef0123456789abcdef"


async def test_deployed_agent_starts_over_ssh_and_answers_on_its_port(sshd, trusted, tmp_path, make_inventory):
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory(node_extra='agent_bind = "127.0.0.1"'))
    workdir = tmp_path / "node-n1"
    async with Fleet(inv) as fleet:
        [deployed] = await fleet.each(lambda conn: deploy_node(conn, wheel))
        assert deployed.ok, deployed.error
        # On a Jetson, JetPack's torch is a system package the venv sees; here torch lives in the test venv.
        [site] = (workdir / "venv" / "lib").glob("python*/site-packages")
        (site / "system_torch.pth").write_text(str(Path(torch.__file__).parents[1]) + "\n")

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
            assert "agent n1 listening on 127.0.0.1:47100" in log
            assert f"{site}/nodes/agent.py" in (await _agent_module(workdir))
        finally:
            [stopped] = await fleet.each(lambda conn: stop_agent(conn, timeout=10))
    assert stopped.value.action == "stopped"
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


async def _agent_module(workdir: Path) -> str:
    """Where the node's venv imports ``nodes.agent`` from (its own site-packages, not this checkout)."""
    import asyncio

    process = await asyncio.create_subprocess_exec(
        str(workdir / "venv" / "bin" / "python"), "-c", "import nodes.agent; print(nodes.agent.__file__)",
        cwd=str(workdir), stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    return out.decode()
