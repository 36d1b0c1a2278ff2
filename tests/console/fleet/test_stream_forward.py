"""Line streaming of a remote command (with cancellation) and SSH local port forwarding to an agent port."""

from __future__ import annotations

import asyncio
import sys
import uuid
from dataclasses import replace

import psutil
import pytest

from console.errors import FleetError
from console.fleet.forward import agent_endpoint, forward_port, is_loopback
from console.fleet.inventory import load_inventory
from console.fleet.remote import sh_join
from console.fleet.ssh import open_ssh

pytestmark = pytest.mark.ssh


def ticker(marker: str, count: int = 100000) -> str:
    """A remote command printing numbered lines every 50 ms; ``marker`` finds it in the process table."""
    code = f"import time\nfor i in range({count}):\n    print(i, {marker!r}, flush=True)\n    time.sleep(0.05)"
    return sh_join([sys.executable, "-c", code])


def running_with(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if marker in " ".join(proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


async def wait_until_gone(marker: str, timeout: float = 5.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if not running_with(marker):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def conn(sshd, trusted, make_inventory):
    inv = load_inventory(make_inventory())
    connection = await open_ssh(inv.nodes[0], inv.cluster)
    yield connection
    await connection.close()


async def test_streams_lines_and_stops_the_command_when_left(conn):
    from console.fleet.stream import LineStream

    marker = uuid.uuid4().hex
    seen = []
    async with LineStream(conn, ticker(marker)) as lines:
        async for line in lines:
            seen.append(line)
            if len(seen) == 3:
                break
        assert running_with(marker), "the command runs while the stream is open"
    assert seen == [f"{i} {marker}" for i in range(3)]
    assert await wait_until_gone(marker), "leaving the stream must stop the remote command"


async def test_cancelling_the_reading_task_stops_the_command(conn):
    from console.fleet.stream import LineStream

    marker = uuid.uuid4().hex
    seen: list[str] = []

    async def consume() -> None:
        async with LineStream(conn, ticker(marker)) as lines:
            async for line in lines:
                seen.append(line)

    task = asyncio.create_task(consume())
    while len(seen) < 2:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_until_gone(marker)


async def test_a_finished_command_ends_the_stream_and_a_failing_one_raises(conn):
    from console.fleet.stream import LineStream

    async with LineStream(conn, "printf 'a\\n\\nb\\n'") as lines:
        assert [line async for line in lines] == ["a", "", "b"]
    with pytest.raises(FleetError, match=r"n1: tegrastats: not found \(exit 4 of .*\)"):
        async with LineStream(conn, "echo partial; echo 'tegrastats: not found' >&2; exit 4") as lines:
            assert [line async for line in lines] == ["partial"]


async def test_forwarding_reaches_a_port_on_the_node_loopback(conn):
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"agent says " + await reader.readline())
        await writer.drain()
        writer.close()

    # Stands in for an agent listening on the node's loopback (the node is this machine).
    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    agent_port = server.sockets[0].getsockname()[1]
    endpoint = await forward_port(conn, agent_port)
    try:
        assert endpoint.forwarded and endpoint.host == "127.0.0.1" and endpoint.port != agent_port
        reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
        writer.write(b"hello\n")
        await writer.drain()
        assert await reader.read() == b"agent says hello\n"
        writer.close()
    finally:
        await endpoint.close()
        server.close()
    with pytest.raises(OSError):
        await asyncio.open_connection(endpoint.host, endpoint.port)


async def test_agent_endpoint_forwards_only_loopback_agents(conn):
    conn.node = replace(conn.node, agent_bind="127.0.0.1", agent_port=47999)
    private = await agent_endpoint(conn)
    try:
        assert private.forwarded and private.port != 47999
    finally:
        await private.close()
    conn.node = replace(conn.node, agent_bind="0.0.0.0")
    public = await agent_endpoint(conn)
    assert (public.forwarded, public.host, public.port) == (False, conn.target.hostname, 47999)
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("10.0.0.1")
