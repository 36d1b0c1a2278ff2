"""The telemetry source contract, and `open_best_source`, which picks jtop, then tegrastats, psutil, /proc.

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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Choice:
    """What `open_best_source` opened, and why each better source was passed over."""

    source: TelemetrySource
    """The open source, ready to stream."""
    skipped: tuple[tuple[str, str], ...]
    """(name, reason) of every better source that could not be opened, best first."""

    def describe(self) -> str:
        """One line for logs and the CLI, e.g. `psutil (jtop: not installed; tegrastats: not found)`."""
        if not self.skipped:
            return self.source.name
        reasons = "; ".join(f"{name}: {reason}" for name, reason in self.skipped)
        return f"{self.source.name} ({reasons})"


async def open_best_source(
    interval: float = 1.0,
    *,
    tegrastats_command: Sequence[str] = DEFAULT_TEGRASTATS,
    use_jtop: bool = True,
) -> Choice:
    """Open the best source that works here: jtop (its service answers), tegrastats, psutil, then /proc.

    ``tegrastats_command`` is the command line to run (``--interval`` is appended); ``use_jtop``
    False skips jtop, for callers that must not connect to the jtop service.
    Raises TelemetryError only when not even /proc can be read (not Linux, no psutil).
    """
    # The sources import this module for their base class, so they are imported here.
    from nodes.telemetry.jtop_source import JtopSource
    from nodes.telemetry.proc_source import ProcSource
    from nodes.telemetry.psutil_source import PsutilSource
    from nodes.telemetry.tegrastats_source import TegrastatsSource

    validate_interval(interval)
    openers = [
        ("jtop", lambda: JtopSource.open(interval)),
        ("tegrastats", lambda: TegrastatsSource.open(interval, command=tegrastats_command)),
        ("psutil", lambda: PsutilSource.open(interval)),
        ("proc", lambda: ProcSource.open(interval)),
    ]
    skipped: list[tuple[str, str]] = []
    for name, opener in openers if use_jtop else openers[1:]:
        try:
            choice = Choice(await opener(), tuple(skipped))
        except TelemetryError as exc:
            skipped.append((name, str(exc)))
            continue
        log.info("telemetry source: %s", choice.describe())
        return choice
    reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
    raise TelemetryError(f"no telemetry source works here ({reasons})")


def validate_interval(interval: float) -> None:
    """Raise TelemetryError unless ``interval`` is a usable sampling period (10 ms to 1 hour)."""
    if not 0.01 <= interval <= 3600:
        raise TelemetryError(f"telemetry interval must be between 0.01 and 3600 seconds, got {interval}")
