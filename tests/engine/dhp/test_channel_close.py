"""A channel closes even when its reader's cancellation is lost (asyncio.wait_for before 3.12, gh-86296)."""

from __future__ import annotations

import asyncio

from engine.dhp.channel import NodeChannel
from engine.dhp.protocol import LinkError


class _LosesCancellation:
    """A link whose ``recv`` keeps waiting when cancelled, as a reader did when a frame met its cancellation;
    only closing the link ends it (what a real connection's shutdown does to a pending receive)."""

    name = "n1"

    def __init__(self) -> None:
        self._closed = asyncio.Event()
        self.cancellations = 0

    async def recv(self, timeout=None):
        while True:
            try:
                await self._closed.wait()
                raise LinkError("n1: connection closed")
            except asyncio.CancelledError:
                self.cancellations += 1
                if self.cancellations > 1:  # only the first: a close that did hang is ended by wait_for's timeout
                    raise

    async def send(self, op, header=None, tensors=()):
        if self._closed.is_set():
            raise LinkError("n1: connection closed")

    def close(self) -> None:
        self._closed.set()


async def test_close_ends_a_reader_that_ignores_its_cancellation():
    lost = []
    link = _LosesCancellation()
    channel = NodeChannel(link, on_message=lambda *_: None, on_lost=lambda name, reason: lost.append(name))
    channel.start_heartbeat(0.01, 60.0)
    await asyncio.sleep(0.05)  # reader waiting, a few heartbeats sent
    await asyncio.wait_for(channel.close(), 5.0)
    assert link.cancellations == 1  # the reader did lose its cancellation, and still ended
    assert lost == [] and channel.lost is None  # closing is not losing the node
