"""A real agent process under attack: fuzzed frames, slow strangers, a tampering relay, peers that try to
act as the coordinator or to make the node dial outside its plan, and non-finite tensors."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct

import psutil
import pytest
import torch

from engine.dhp.checkpoints import stage_states
from engine.dhp.protocol import LinkError, Op, pack_state
from engine.dhp.stage import StageSpec
from nodes.client import NodeClient, connect_node
from nodes.op_frames import recv_op, send_op
from nodes.wire import connect
from nodes.wire.frame import MAGIC, PROTOCOL_VERSION, MessageType
from tests.nodes.agent_procs import SECRET, log_text, start_agents
from tests.nodes.test_agent import MODEL, OPTIM, UNITS
from tests.nodes.wire.test_integrity import TamperingRelay

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    """One agent with a 1 GB budget and small caps on strangers (the defaults are 32 and 256)."""
    (started,) = start_agents(tmp_path_factory.mktemp("agents"), ["target"], memory="1GB")
    yield started
    started.stop()


async def _coordinator(agent) -> NodeClient:
    link = await connect_node(agent.name, agent.host, agent.port, SECRET, 10.0)
    await link.send(Op.ATTACH, {"req": 1, "run": "security"})
    assert (await link.recv(timeout=10)).op is Op.ATTACHED
    return link


async def _still_serves(agent) -> None:
    link = await _coordinator(agent)
    await link.send(Op.PING, {"n": 1})
    assert (await link.recv(timeout=10)).op is Op.PONG
    link.close()


def _prefix(kind: int, header_len: int, payload_len: int, magic: bytes = MAGIC, version: int = PROTOCOL_VERSION) -> bytes:
    return struct.pack("!4sBBHIQ", magic, version, kind, 0, header_len, payload_len)


def _framed(kind: int, header: bytes, payload_len: int = 0) -> bytes:
    return _prefix(kind, len(header), payload_len) + header


def malformed_frames(rng: random.Random):
    """An endless, seeded stream of frames no honest client sends before authenticating."""
    deep = "[" * 5000 + "]" * 5000
    makers = [
        lambda: rng.randbytes(rng.randint(1, 64)),
        lambda: _prefix(MessageType.HELLO, 2, 0, magic=rng.randbytes(4)) + b"{}",
        lambda: _prefix(MessageType.HELLO, 2, 0, version=rng.choice([0, 3, 255])) + b"{}",
        lambda: _prefix(rng.randint(15, 255), 2, 0) + b"{}",
        lambda: _framed(MessageType.HELLO, deep[: rng.randint(100, 4000)].encode()),
        lambda: _framed(MessageType.HELLO, json.dumps({"meta": {}, "tensors": [
            {"dtype": "float32", "shape": [2**rng.randint(31, 70), 0], "nbytes": 0}]}).encode()),
        lambda: _framed(MessageType.HELLO, json.dumps({"meta": {"nonce": rng.randbytes(8).hex()}, "tensors": []}).encode()),
        lambda: _framed(MessageType.HELLO, rng.randbytes(rng.randint(1, 200))),
        lambda: _prefix(MessageType.HELLO, rng.randint(5000, 2**31), 0),
        lambda: _prefix(MessageType.FORWARD, 40, rng.randint(1, 2**60)),
        lambda: _framed(MessageType.HELLO, json.dumps({"meta": [1] * 10, "tensors": {}}).encode()),
        lambda: _framed(MessageType.AUTH_RESPONSE, json.dumps({"meta": {"proof": "00" * 32}, "tensors": []}).encode()),
    ]
    while True:
        yield rng.choice(makers)()


async def _throw(host: str, port: int, frames, count: int) -> int:
    """Send ``count`` frames, each on its own connection, and read until the agent closes it (a frame is
    refused as soon as it is judged: every bad frame closes the connection it came on)."""
    loop = asyncio.get_running_loop()
    sent = 0
    for frame in frames:
        if sent == count:
            return sent
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, (host, port))
            await loop.sock_sendall(sock, frame)
            sock.shutdown(socket.SHUT_WR)  # a short frame then ends mid-frame instead of waiting for a deadline
            while await asyncio.wait_for(loop.sock_recv(sock, 65536), 5.0):
                pass
        except OSError:  # reset, or not connected any more: the agent cut it off (timeouts are OSErrors too)
            pass
        finally:
            sock.close()
        sent += 1
    return sent


async def test_ten_thousand_malformed_frames_leave_the_agent_serving_with_flat_memory(agent):
    process = psutil.Process(agent.pid)
    frames = malformed_frames(random.Random(11))
    await asyncio.gather(*(_throw(agent.host, agent.port, frames, 20) for _ in range(16)))  # warm-up
    before = process.memory_info().rss
    sent = sum(await asyncio.gather(*(_throw(agent.host, agent.port, frames, 625) for _ in range(16))))
    growth = process.memory_info().rss - before
    assert sent == 10_000
    await _still_serves(agent)
    assert growth < 20e6, f"RSS grew by {growth / 1e6:.1f} MB"
    text = log_text(agent)
    assert "Traceback" not in text and "handler failed" not in text
    # Rate-limited: a few lines a minute about strangers, not one per frame.
    assert text.count("closing connection from") <= 20
    assert len(text.splitlines()) < 200


async def test_a_coordinator_gets_in_while_200_slow_strangers_hold_sockets(agent):
    loop = asyncio.get_running_loop()
    strangers = []
    for _ in range(200):
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, (agent.host, agent.port))
        strangers.append(sock)

    async def dribble() -> None:  # one byte every 0.5 s on each: the old per-read timeout never fell
        while True:
            for sock in strangers:
                try:
                    sock.send(b"L")
                except OSError:
                    pass
            await asyncio.sleep(0.5)

    dribbling = loop.create_task(dribble())
    try:
        await asyncio.sleep(1.0)
        started = loop.time()
        await _still_serves(agent)
        assert loop.time() - started < 5.0
    finally:
        dribbling.cancel()
        for sock in strangers:
            sock.close()


async def test_a_relay_that_injects_shutdown_after_the_handshake_is_cut_off(agent):
    relay = TamperingRelay((agent.host, agent.port), "inject", at=1)
    host, port = await relay.start()
    try:
        link = await connect_node(agent.name, host, port, SECRET, 10.0)
        await link.send(Op.ATTACH, {"req": 1})
        assert (await link.recv(timeout=10)).op is Op.ATTACHED
        await link.send(Op.PING, {"n": 2})  # the relay slips a forged SHUTDOWN in before it
        with pytest.raises(LinkError):
            while True:
                await link.recv(timeout=10)
        link.close()
    finally:
        await relay.close()
    await asyncio.sleep(0.2)
    assert agent.process.poll() is None
    assert "failed its integrity check" in log_text(agent)
    await _still_serves(agent)


async def test_a_peer_can_neither_command_the_node_nor_make_it_dial_outside_the_plan(agent):
    outside = socket.create_server(("127.0.0.1", 0))
    outside.setblocking(False)
    outside_port = outside.getsockname()[1]
    link = await _coordinator(agent)
    try:
        # Stage 2 of 2; the plan holds this node and an upstream node "up" (on a port nobody listens on).
        keys, tensors = pack_state(stage_states(MODEL, [UNITS - 2], None, 0)[1])
        plan = {"target": [agent.host, agent.port], "up": ["127.0.0.1", 1]}
        await link.send(Op.ASSIGN, {
            "req": 2, "stage": {"index": 1, "count": 2, "spec": StageSpec(MODEL, UNITS - 2, UNITS).to_dict()},
            "optim": OPTIM.to_dict(), "seed": 0, "memory": None, "emulation": None, "data": None,
            "address": {"host": agent.host, "port": agent.port}, "peers": plan, "keys": keys}, tensors)
        assert (await link.recv(timeout=60)).op is Op.ASSIGNED

        x = torch.randn(4, 512, 1, 1)
        for reply_to in ({"host": "127.0.0.1", "port": outside_port, "node": "up"},
                         {"host": "127.0.0.1", "port": outside_port, "node": "evil"}):
            peer = await connect(agent.host, agent.port, SECRET, 10.0)
            await send_op(peer, Op.ACTIVATION, {"chain": 1, "batch": 0, "iteration": 0, "reply_to": reply_to}, [x])
            with pytest.raises(Exception, match="closed|not a node of the assigned plan"):
                while True:
                    await recv_op(peer, timeout=10)
            peer.close()
        for op in (Op.ATTACH, Op.SHUTDOWN, Op.GET_PARAMS):
            peer = await connect(agent.host, agent.port, SECRET, 10.0)
            await send_op(peer, op, {"req": 9})
            with pytest.raises(Exception, match="closed|needs the coordinator role"):
                while True:
                    await recv_op(peer, timeout=10)
            peer.close()

        # A planned peer's activation holding NaN is refused, and the coordinator hears why.
        peer = await connect(agent.host, agent.port, SECRET, 10.0)
        bad = x.clone()
        bad[0, 0, 0, 0] = float("nan")
        await send_op(peer, Op.ACTIVATION, {"chain": 2, "batch": 0, "iteration": 0,
                                            "reply_to": {"host": "127.0.0.1", "port": 1, "node": "up"}}, [bad])
        failed = await link.recv(timeout=10)
        peer.close()
        assert failed.op is Op.FAILED and failed.header["chain"] == 2
        assert "non-finite activation refused" in failed.header["reason"]

        # The coordinator itself cannot point NEXT_HOP outside the plan either.
        await link.send(Op.NEXT_HOP, {"chain": 3, "node": "evil", "host": "127.0.0.1", "port": outside_port})
        answer = await link.recv(timeout=10)
        assert answer.op is Op.FAILED
        # Nor can an assignment name a fixed chain's successor outside the plan.
        await link.send(Op.ASSIGN, {
            "req": 4, "stage": {"index": 0, "count": 2, "spec": StageSpec(MODEL, 0, UNITS - 2).to_dict()},
            "optim": OPTIM.to_dict(), "seed": 0, "memory": None, "emulation": None, "data": None,
            "address": {"host": agent.host, "port": agent.port}, "peers": plan, "successor": "evil", "keys": []})
        answer = await link.recv(timeout=10)
        assert answer.op is Op.ERROR and "successor evil is not a node of the plan" in answer.header["reason"]
        await asyncio.sleep(0.5)
        with pytest.raises(BlockingIOError):
            outside.accept()  # nobody ever dialled the address outside the plan
    finally:
        link.close()
        outside.close()
    text = log_text(agent)
    assert "is not a node of the assigned plan" in text and "needs the coordinator role" in text
    assert agent.process.poll() is None
