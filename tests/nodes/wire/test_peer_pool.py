"""Kept peer data connections: a connection the receiving node has closed (idle timeout, restart) is
not reused, because a send on it would succeed locally and the activation or gradient would be lost."""

from __future__ import annotations

import asyncio

import torch

from engine.dhp.protocol import Op
from nodes.op_frames import recv_op
from nodes.peers import PeerPool
from nodes.wire import Connection, serve
from tests.nodes.wire.conftest import SECRET


async def test_a_connection_the_peer_closed_is_replaced_and_nothing_is_lost():
    received: asyncio.Queue[tuple[int, float]] = asyncio.Queue()
    connections = 0

    async def one_message_then_close(conn: Connection) -> None:  # like an agent closing an idle link
        nonlocal connections
        connections += 1
        message = await recv_op(conn, timeout=5.0)
        await received.put((message.header["chain"], float(message.tensors[0].sum())))

    server = await serve("127.0.0.1", 0, one_message_then_close, SECRET, timeout=5.0)
    pool = PeerPool(SECRET, timeout=5.0)
    try:
        await pool.send(*server.address, Op.ACTIVATION, {"chain": 1}, [torch.ones(1000)])
        assert await asyncio.wait_for(received.get(), 5.0) == (1, 1000.0)
        await asyncio.sleep(0.2)  # the server has closed its end by now
        await pool.send(*server.address, Op.ACTIVATION, {"chain": 2}, [torch.full((1000,), 2.0)])
        assert await asyncio.wait_for(received.get(), 5.0) == (2, 2000.0)
        assert connections == 2
    finally:
        pool.close()
        await server.close()


async def test_an_open_quiet_connection_is_kept():
    received: asyncio.Queue[int] = asyncio.Queue()
    connections = 0

    async def keep_reading(conn: Connection) -> None:
        nonlocal connections
        connections += 1
        while True:
            await received.put((await recv_op(conn, timeout=5.0)).header["chain"])

    server = await serve("127.0.0.1", 0, keep_reading, SECRET, timeout=5.0)
    pool = PeerPool(SECRET, timeout=5.0)
    try:
        for chain in (1, 2, 3):
            await pool.send(*server.address, Op.ACTIVATION, {"chain": chain}, [torch.zeros(10)])
            assert await asyncio.wait_for(received.get(), 5.0) == chain
        assert connections == 1
    finally:
        pool.close()
        await server.close()
