"""The telemetry source contract: what every source (jtop, tegrastats, psutil, /proc) provides.

`nodes.telemetry.choose.open_best_source` picks the best one that works on a machine.

Contract: a source is opened by its own ``open(...)`` coroutine, which raises TelemetryError
when the source cannot work on this machine, and is already producing when it returns.
``source.samples()`` is an async iterator yielding one Sample per interval until the source
stops (it raises TelemetryError if the underlying service or process dies). ``await
source.close()`` releases the process, thread or connection; sources are also async context
managers. The interval is fixed when the source is opened because tegrastats and the jtop
service take it at start-up.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import AsyncIterator

from nodes.errors import TelemetryError
from nodes.telemetry.sample import Sample

log = logging.getLogger(__name__)

DEFAULT_TEGRASTATS = ("tegrastats",)


class TelemetrySource(abc.ABC):
    """A stream of Samples from one machine, one per interval."""

    name: str
    """Short name shown to the operator: "jtop", "tegrastats", "psutil" or "proc"."""

    def __init__(self, interval: float) -> None:
        self.interval = interval

    @abc.abstractmethod
    def samples(self) -> AsyncIterator[Sample]:
        """Yield one Sample per interval until closed; raises TelemetryError if the source dies."""

    async def close(self) -> None:  # noqa: B027  (optional hook: sources holding nothing keep this no-op)
        """Release what the source holds (process, thread, connection); closing twice is harmless."""

    async def __aenter__(self) -> TelemetrySource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class PolledSource(TelemetrySource):
    """A source read on demand (psutil, /proc): ``read()`` on fixed deadlines, one per interval."""

    def __init__(self, interval: float) -> None:
        super().__init__(interval)
        self._closed = False

    @abc.abstractmethod
    def read(self) -> Sample:
        """One reading now."""

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield a reading every interval, on fixed deadlines so a slow reading does not drift the rate."""
        deadline = time.monotonic()
        while not self._closed:
            deadline += self.interval
            delay = deadline - time.monotonic()
            if delay < -self.interval:  # stalled (laptop asleep, loop blocked): restart the schedule
                deadline = time.monotonic()
            await asyncio.sleep(max(delay, 0.0))
            if self._closed:
                return
            yield self.read()

    async def close(self) -> None:
        """Stop the stream after the current reading."""
        self._closed = True


def validate_interval(interval: float) -> None:
    """Raise TelemetryError unless ``interval`` is a usable sampling period (10 ms to 1 hour)."""
    if not 0.01 <= interval <= 3600:
        raise TelemetryError(f"telemetry interval must be between 0.01 and 3600 seconds, got {interval}")
