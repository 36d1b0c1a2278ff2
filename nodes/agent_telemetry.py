"""The agent's telemetry: the best source of this machine (jtop, tegrastats, psutil), opened on first request."""

from __future__ import annotations

import asyncio
import logging

from engine.deadline import within
from nodes.errors import TelemetryError
from nodes.telemetry.choose import open_best_source
from nodes.telemetry.sample import Sample
from nodes.telemetry.source import TelemetrySource

log = logging.getLogger(__name__)


class LatestSample:
    """Keeps the newest sample of one source, read in the background once someone asked for telemetry."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.source_name: str | None = None
        """Which source was opened (``jtop``, ``tegrastats`` or ``psutil``), once open."""
        self._source: TelemetrySource | None = None
        self._task: asyncio.Task | None = None
        self._latest: Sample | None = None
        self._fresh = asyncio.Event()
        self._opening = asyncio.Lock()

    async def get(self, timeout: float) -> Sample:
        """The newest sample (waits for the first one after opening); raises TelemetryError."""
        async with self._opening:
            if self._source is None:
                choice = await open_best_source(self.interval)
                self._source, self.source_name = choice.source, choice.source.name
                log.info("telemetry source: %s", choice.describe())
                self._task = asyncio.get_running_loop().create_task(self._read(choice.source))
        if self._latest is None:
            try:
                await within(self._fresh.wait(), timeout)
            except asyncio.TimeoutError:
                raise TelemetryError(f"{self.source_name} gave no sample within {timeout:g} s") from None
        if self._latest is None:
            raise TelemetryError(f"telemetry source {self.source_name} stopped")
        return self._latest

    async def _read(self, source: TelemetrySource) -> None:
        try:
            async for sample in source.samples():
                self._latest = sample
                self._fresh.set()
        except TelemetryError as exc:
            log.warning("telemetry source %s stopped: %s", self.source_name, exc)
        finally:
            self._fresh.set()  # wake waiters; they see no sample and raise

    async def close(self) -> None:
        """Stop reading and release the source."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._source is not None:
            await self._source.close()
