"""Link emulation: frames over a shaped connection take latency + size / bandwidth, loosely timed."""

from __future__ import annotations

import asyncio
import time

import pytest
import torch

from nodes.errors import NodeError
from nodes.wire import Connection, LinkShape, MessageType, connect, serve
from nodes.wire.shaping import MAX_SLICE_BYTES, PACE_STEP_S, Pacer
from tests.nodes.wire.conftest import SECRET


def test_link_shape_from_tc_units():
    link = LinkShape.from_mbit(1000, latency_ms=2)
    assert link.bandwidth == 125e6 and link.latency == 0.002
    assert link.transfer_time(12_800_000) == pytest.approx(0.002 + 0.1024)


@pytest.mark.parametrize(("bandwidth", "latency"), [(0, 0), (-5, 0), (1e6, -1), (float("nan"), 0)])
def test_link_shape_refuses_nonsense(bandwidth, latency):
    with pytest.raises(NodeError, match="link (bandwidth|latency)"):
        LinkShape(bandwidth, latency)


async def _timed_sends(shape: LinkShape | None, tensors: list[torch.Tensor]) -> tuple[float, list[float]]:
    """Seconds from the first send to the receipt of each frame, with the sender shaped by ``shape``."""
    arrivals: list[float] = []
    done = asyncio.Event()

    async def sink(conn: Connection) -> None:
        for _ in tensors:
            message = await conn.recv()
            arrivals.append(time.perf_counter())
            assert message.tensors[0].numel() > 0
        done.set()

    server = await serve("127.0.0.1", 0, sink, SECRET, timeout=5.0)
    client = await connect(*server.address, SECRET, timeout=5.0, shaping=shape)
    try:
        start = time.perf_counter()
        for tensor in tensors:
            await client.send(MessageType.FORWARD, {}, [tensor])
        await asyncio.wait_for(done.wait(), 10)
        return start, [t - start for t in arrivals]
    finally:
        client.close()
        await server.close()


async def test_a_12_8_mb_tensor_on_a_1_gbit_link_takes_about_102_ms_plus_latency():
    tensor = torch.zeros(3_200_000)  # 12.8 MB
    link = LinkShape.from_mbit(1000, latency_ms=20)
    _, (elapsed,) = await _timed_sends(link, [tensor])
    expected = link.transfer_time(12_800_000 + 100)  # the header adds ~100 bytes
    assert expected == pytest.approx(0.1224, abs=0.001)
    assert 0.75 * expected < elapsed < 1.25 * expected


async def test_frames_back_to_back_each_pay_latency_and_earn_no_burst_credit():
    tensor = torch.zeros(250_000)  # 1 MB, 80 ms at 100 Mbit/s
    link = LinkShape.from_mbit(100, latency_ms=10)
    _, arrivals = await _timed_sends(link, [tensor, tensor, tensor])
    per_frame = link.transfer_time(1_000_000)
    for i, arrival in enumerate(arrivals, start=1):
        assert 0.75 * i * per_frame < arrival < 1.25 * i * per_frame



def test_a_fast_link_releases_its_bytes_in_small_slices():
    # 5 ms of a 1 Gbit/s link is 625 kB; 5 ms of 10 Gbit/s would be 6.25 MB, whose copy through the kernel
    # (after the link "carried" it) would add milliseconds to every frame: fast links are capped.
    slow, fast = Pacer(LinkShape.from_mbit(1000)), Pacer(LinkShape.from_mbit(10_000))
    assert slow.slice_bytes == int(125e6 * PACE_STEP_S)
    assert fast.slice_bytes == MAX_SLICE_BYTES < int(1.25e9 * PACE_STEP_S)
