"""Fixtures for the wire tests: a cluster secret, a real echo server on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import socket

import pytest
import torch

from nodes.wire import Connection, FrameLimits, MessageType, Server, connect, serve
from nodes.wire.frame import MiB

SECRET = b"test-cluster-secret-0123456789abcdef"


async def echo(conn: Connection) -> None:
    """Send every frame back unchanged until SHUTDOWN (a peer leaving without one is logged by the server)."""
    while True:
        message = await conn.recv()
        if message.type is MessageType.SHUTDOWN:
            return
        await conn.send(message.type, message.header, message.tensors)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
async def echo_server():
    """An echo server with a short timeout and a 2 MiB payload limit, so limit tests stay small."""
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0, limits=FrameLimits(max_payload_bytes=2 * MiB))
    yield server
    await server.close()


async def assert_serves(server: Server) -> None:
    """A fresh, honest client still gets its frame echoed: the server survived whatever came before."""
    conn = await connect(*server.address, SECRET, timeout=5.0)
    try:
        sent = torch.arange(6, dtype=torch.float32).reshape(2, 3)
        await conn.send(MessageType.PING, {"probe": 1}, [sent])
        reply = await conn.recv()
        assert reply.type is MessageType.PING
        assert reply.header == {"probe": 1}
        assert torch.equal(reply.tensors[0], sent)
        await conn.send(MessageType.SHUTDOWN)
    finally:
        conn.close()


async def raw_socket(server: Server) -> socket.socket:
    """A plain non-blocking TCP socket connected to ``server``, for sending bytes no honest peer would."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, server.address)
    return sock


async def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection; fails if it is still open after ``within`` s."""
    loop = asyncio.get_running_loop()
    received = bytearray()

    async def drain() -> None:
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return
            if not chunk:
                return
            received.extend(chunk)

    await asyncio.wait_for(drain(), within)
    return bytes(received)
