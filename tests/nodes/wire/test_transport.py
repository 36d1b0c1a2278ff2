"""Connections over real loopback sockets: tensor and header round trips, in-place receives, timeouts."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
import torch

from nodes.errors import NodeError, ProtocolError
from nodes.wire import (
    Connection,
    ConnectionClosed,
    FrameLimits,
    MessageType,
    TransportTimeout,
    connect,
    serve,
)
from tests.nodes.wire.conftest import SECRET


@pytest.fixture
async def pair():
    """Two ends of one authenticated connection: (client, server side)."""
    accepted: asyncio.Queue[Connection] = asyncio.Queue()
    finished = asyncio.Event()

    async def hold(conn: Connection) -> None:
        await accepted.put(conn)
        await finished.wait()

    server = await serve("127.0.0.1", 0, hold, SECRET, timeout=5.0)
    client = await connect(*server.address, SECRET, timeout=5.0)
    yield client, await accepted.get()
    finished.set()
    client.close()
    await server.close()


def _sample(dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    if dtype is torch.bool:
        return torch.rand(shape) > 0.5
    if dtype.is_floating_point:
        return torch.randn(shape).to(dtype)
    return torch.randint(-100 if dtype is not torch.uint8 else 0, 100, shape, dtype=dtype)


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32,
          torch.int16, torch.int8, torch.uint8, torch.bool]
SHAPES = [(), (0,), (2, 0, 3), (7,), (3, 4, 5), (2, 3, 16, 16)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
async def test_tensors_of_every_dtype_and_shape_round_trip(pair, dtype):
    client, server_side = pair
    sent = [_sample(dtype, shape) for shape in SHAPES]
    await client.send(MessageType.FORWARD, {"dtype": str(dtype)}, sent)
    message = await server_side.recv()
    assert message.type is MessageType.FORWARD
    assert len(message.tensors) == len(sent)
    for got, want in zip(message.tensors, sent):
        assert got.dtype == want.dtype and got.shape == want.shape
        assert torch.equal(got, want)


async def test_non_contiguous_gradient_carrying_tensors_arrive_contiguous_and_equal(pair):
    client, server_side = pair
    base = torch.randn(6, 8, requires_grad=True)
    views = [base.t(), base[:, ::2], base.expand(2, 6, 8), base[1:3]]
    assert not views[0].is_contiguous() and not views[1].is_contiguous()
    await client.send(MessageType.BACKWARD, {}, views)
    message = await server_side.recv()
    for got, want in zip(message.tensors, views):
        assert got.is_contiguous() and not got.requires_grad
        assert torch.equal(got, want.detach())


async def test_header_round_trips_and_frames_keep_their_order(pair):
    client, server_side = pair
    headers = [
        {"step": 1, "micro_batch": 0, "chain": [0, 2, 1], "loss": -0.25, "note": "ünïcode ✓", "none": None},
        {},
        {"nested": {"a": [1, {"b": True}]}, "big": 2**53},
    ]
    for i, header in enumerate(headers):
        await client.send(MessageType.TIMING, header, [torch.full((3,), float(i))])
    for i, header in enumerate(headers):
        message = await server_side.recv()
        assert message.header == header
        assert torch.equal(message.tensors[0], torch.full((3,), float(i)))


async def test_recv_fills_offered_tensors_in_place_when_they_match(pair):
    client, server_side = pair
    activation = torch.empty(4, 256)
    other = torch.zeros(3, dtype=torch.int64)
    for step in range(3):
        sent = torch.randn(4, 256)
        await client.send(MessageType.FORWARD, {"step": step}, [sent, torch.arange(5)])
        message = await server_side.recv(into=[activation, other])
        assert message.tensors[0] is activation  # same storage every step, no new allocation
        assert torch.equal(activation, sent)
        assert message.tensors[1] is not other  # shape differs: a fresh tensor instead
        assert torch.equal(message.tensors[1], torch.arange(5))
    assert torch.equal(other, torch.zeros(3, dtype=torch.int64))


async def test_large_tensor_round_trips_through_the_socket_buffers(pair):
    client, server_side = pair
    big = torch.randn(3_200_000)  # 12.8 MB, far beyond the kernel's socket buffers
    receive = asyncio.ensure_future(server_side.recv())
    await client.send(MessageType.PARAMETERS, {"layer": 7}, [big, big[:10]])
    message = await receive
    assert torch.equal(message.tensors[0], big) and torch.equal(message.tensors[1], big[:10])


async def test_concurrent_sends_never_interleave_frames(pair):
    client, server_side = pair
    a, b = torch.full((600_000,), 1.0), torch.full((600_000,), 2.0)
    receive = asyncio.ensure_future(asyncio.gather(server_side.recv(), server_side.recv()))
    await asyncio.gather(
        client.send(MessageType.FORWARD, {"which": "a"}, [a]),
        client.send(MessageType.FORWARD, {"which": "b"}, [b]),
    )
    for message in await receive:
        expected = a if message.header["which"] == "a" else b
        assert torch.equal(message.tensors[0], expected)


async def test_both_directions_work_at_once(pair):
    client, server_side = pair
    up, down = torch.randn(500_000), torch.randn(500_000)
    results = await asyncio.gather(
        client.send(MessageType.FORWARD, {}, [up]),
        server_side.send(MessageType.BACKWARD, {}, [down]),
        server_side.recv(),
        client.recv(),
    )
    assert torch.equal(results[2].tensors[0], up) and torch.equal(results[3].tensors[0], down)


async def test_bad_header_or_oversized_send_is_refused_before_anything_is_sent(pair):
    client, server_side = pair
    client.limits = FrameLimits(max_payload_bytes=1000)
    with pytest.raises(ProtocolError, match="header is not JSON-serialisable"):
        await client.send(MessageType.TELEMETRY, {"t": {1, 2}})
    with pytest.raises(ProtocolError, match="payload of 4000 bytes exceeds the limit of 1000"):
        await client.send(MessageType.FORWARD, {}, [torch.zeros(1000)])
    with pytest.raises(ProtocolError, match="dtype complex64 cannot be sent"):
        await client.send(MessageType.FORWARD, {}, [torch.zeros(2, dtype=torch.complex64)])
    await client.send(MessageType.PING, {"after": "refusals"})
    message = await server_side.recv()  # the stream is still in step: nothing of the refused frames went out
    assert message.type is MessageType.PING and message.header == {"after": "refusals"}


async def test_recv_times_out_with_a_domain_error(pair):
    client, _ = pair
    start = time.monotonic()
    with pytest.raises(TransportTimeout, match=r"did not make progress for 0.2 s while receiving the frame prefix"):
        await client.recv(timeout=0.2)
    assert 0.15 < time.monotonic() - start < 2.0
    assert issubclass(TransportTimeout, TimeoutError)


async def test_send_times_out_when_the_peer_stops_reading(pair):
    client, _ = pair
    client.timeout = 0.3
    with pytest.raises(TransportTimeout, match="while sending"):
        for _ in range(50):  # 50 x 40 MB: the peer never reads, so the socket buffers fill and stay full
            await client.send(MessageType.FORWARD, {}, [torch.zeros(10_000_000)])


async def test_peer_closing_is_reported_as_connection_closed(pair):
    client, server_side = pair
    server_side.close()
    with pytest.raises(ConnectionClosed, match="closed the connection$"):
        await client.recv()
    assert server_side.closed


async def test_closing_wakes_a_receive_waiting_in_another_task_and_later_calls_fail(pair):
    client, _ = pair
    waiting = asyncio.ensure_future(client.recv())
    await asyncio.sleep(0.05)
    start = time.monotonic()
    client.close()
    with pytest.raises(ConnectionClosed, match="closed on this side while receiving the frame prefix"):
        await waiting
    assert time.monotonic() - start < 1.0  # the connection's timeout is 5 s
    assert client.closed
    with pytest.raises(ConnectionClosed, match="closed on this side while sending"):
        await client.send(MessageType.PING)
    with pytest.raises(ConnectionClosed, match="closed on this side while receiving"):
        await client.recv()


async def test_connect_to_a_port_nobody_listens_on_fails_cleanly():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectionClosed, match=f"cannot connect to 127.0.0.1:{port}: Connection refused"):
        await connect("127.0.0.1", port, SECRET, timeout=2.0)


async def test_unknown_host_and_bad_timeout_fail_cleanly():
    with pytest.raises(ConnectionClosed, match="cannot resolve no-such-host.invalid"):
        await connect("no-such-host.invalid", 9, SECRET, timeout=5.0)
    with pytest.raises(NodeError, match="connection timeout must be > 0 s, got 0"):
        await connect("127.0.0.1", 9, SECRET, timeout=0)
    with pytest.raises(NodeError, match="connection timeout must be > 0 s, got -1"):
        await serve("127.0.0.1", 0, lambda conn: asyncio.sleep(0), SECRET, timeout=-1)


async def test_serve_on_a_busy_port_fails_cleanly():
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        with pytest.raises(ConnectionClosed, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve("127.0.0.1", port, lambda conn: asyncio.sleep(0), SECRET)
