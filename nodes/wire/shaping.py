"""Link emulation inside the transport: pace sends to a bandwidth and add a latency, as the paper's tc did.

The paper trained on TX2 boards joined by a switch; to reproduce its link on loopback, each sending side
of a :class:`~nodes.wire.transport.Connection` may carry a :class:`LinkShape`. A frame then pays the
one-way ``latency`` once and its bytes leave no faster than ``bandwidth``: a 12.8 MB activation over a
1 Gbit/s link (125e6 bytes/s) with 1 ms latency takes 1 + 102.4 ms. Pacing sleeps on the event loop
(``asyncio.sleep`` to an absolute schedule, so oversleeping one step is made up by the next), never
busy-waits. A connection without a shape takes none of this code path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from nodes.errors import NodeError

PACE_STEP_S = 0.005
"""Bytes are released in slices of about this many seconds of link time: fine enough that the receiver
sees a steady stream, coarse enough that the event loop's millisecond timer resolution does not matter."""
MIN_SLICE_BYTES = 16 * 1024
MAX_SLICE_BYTES = 1024 * 1024
"""A slice leaves once the link would have carried it, and then still takes its copy time through the
kernel; on a fast link a 5 ms slice (6 MB at 10 Gbit/s) would add that copy to every frame and hand the
receiver its bytes in two bursts. Capped, a slice costs well under a millisecond of copying and the
receiver sees a stream it can hash as it arrives."""


@dataclass(frozen=True)
class LinkShape:
    """An emulated link, applied to what one side sends."""

    bandwidth: float
    """Link rate in bytes per second (1 Gbit/s = 125e6)."""
    latency: float = 0.0
    """One-way delay in seconds that every frame pays once before its first byte leaves."""

    def __post_init__(self) -> None:
        if not self.bandwidth > 0:
            raise NodeError(f"link bandwidth must be > 0 bytes/s, got {self.bandwidth}")
        if not 0 <= self.latency < 3600:
            raise NodeError(f"link latency must be between 0 and 3600 s, got {self.latency}")

    @classmethod
    def from_mbit(cls, mbit_per_s: float, latency_ms: float = 0.0) -> LinkShape:
        """A link of ``mbit_per_s`` megabits per second and ``latency_ms`` milliseconds, as tc states them."""
        return cls(bandwidth=mbit_per_s * 1e6 / 8, latency=latency_ms / 1000)

    def transfer_time(self, nbytes: int) -> float:
        """Seconds a frame of ``nbytes`` takes on this link when it has the link to itself."""
        return self.latency + nbytes / self.bandwidth


class Pacer:
    """Releases a connection's outgoing bytes on the schedule of its :class:`LinkShape`."""

    def __init__(self, shape: LinkShape) -> None:
        self.shape = shape
        self.slice_bytes = max(MIN_SLICE_BYTES, min(MAX_SLICE_BYTES, int(shape.bandwidth * PACE_STEP_S)))
        """Largest piece the transport hands to the socket at once on this link."""
        self._free_at = 0.0

    async def start_frame(self) -> None:
        """Wait out the link latency, then start the frame's byte schedule from now.

        An idle link earns no credit: a frame never bursts faster than the bandwidth.
        """
        if self.shape.latency:
            await asyncio.sleep(self.shape.latency)
        self._free_at = max(asyncio.get_running_loop().time(), self._free_at)

    async def admit(self, nbytes: int, idle: Callable[[], bool] | None = None) -> None:
        """Wait until the link would have carried ``nbytes`` more of the frame, so they reach the peer
        when the emulated link would deliver their last byte. The schedule is absolute: a late wake-up
        shortens the next wait instead of delaying the whole frame. ``idle()`` is called while the schedule
        holds the bytes back (work that would otherwise wait, such as the frame's MAC) until it has none."""
        loop = asyncio.get_running_loop()
        self._free_at += nbytes / self.shape.bandwidth
        while idle is not None and self._free_at > loop.time() and idle():
            pass
        delay = self._free_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
