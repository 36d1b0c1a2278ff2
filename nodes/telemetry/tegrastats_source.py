"""Telemetry from the `tegrastats` command, run as a child process and parsed line by line."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import os
import signal
from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from nodes.errors import TelemetryError
from nodes.telemetry.sample import Sample
from nodes.telemetry.source import DEFAULT_TEGRASTATS, TelemetrySource, validate_interval
from nodes.telemetry.tegrastats import parse_tegrastats_line

log = logging.getLogger(__name__)

# Lines of stderr kept to explain a failure; tegrastats says little there.
_STDERR_TAIL = 5
_STOP_GRACE_S = 2.0


class TegrastatsSource(TelemetrySource):
    """Runs ``<command> --interval <ms>`` and yields one parsed Sample per printed line.

    Lines without a date prefix (L4T before JetPack 5) are stamped with the time they arrive.
    The child runs in its own session so closing also stops anything it spawned (a sudo wrapper).
    """

    name = "tegrastats"

    def __init__(self, interval: float, process: asyncio.subprocess.Process, first: Sample, program: str) -> None:
        super().__init__(interval)
        assert process.stdout is not None and process.stderr is not None  # started with both piped (open)
        self._process = process
        self._stdout = process.stdout
        self._first: Sample | None = first
        self._program = program
        self._closed = False
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL)
        self._stderr_task = asyncio.create_task(_drain(process.stderr, self._stderr))

    @classmethod
    async def open(
        cls, interval: float, *, command: Sequence[str] = DEFAULT_TEGRASTATS, start_timeout: float | None = None
    ) -> TegrastatsSource:
        """Start tegrastats and wait for its first line; TelemetryError if it is missing, fails or prints no tegrastats.

        ``start_timeout`` defaults to three intervals, at least 3 s.
        """
        validate_interval(interval)
        if not command:
            raise TelemetryError("tegrastats command is empty")
        program = command[0]
        argv = [*command, "--interval", str(max(1, round(interval * 1000)))]
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise TelemetryError(f"{program} not found") from None
        except PermissionError:
            raise TelemetryError(f"{program} is not executable") from None
        except OSError as exc:
            raise TelemetryError(f"{program} could not start: {exc.strerror or exc}") from None
        assert process.stdout is not None and process.stderr is not None  # both piped above
        timeout = start_timeout if start_timeout is not None else max(3.0, 3 * interval)
        try:
            line = await asyncio.wait_for(process.stdout.readline(), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            await _stop(process)
            raise TelemetryError(f"{program} printed nothing within {timeout:g} s") from None
        if not line:
            stderr = (await process.stderr.read()).decode(errors="replace").strip().splitlines()
            code = await process.wait()
            detail = f": {stderr[-1]}" if stderr else ""
            raise TelemetryError(f"{program} exited with code {code}{detail}")
        first = parse_tegrastats_line(line.decode(errors="replace"))
        if first.ram is None and not first.cpus:
            await _stop(process)
            shown = line[:60].decode(errors="replace").strip()
            raise TelemetryError(f"{program} does not print tegrastats lines (got {shown!r})")
        return cls(interval, process, _stamped(first), program)

    async def samples(self) -> AsyncIterator[Sample]:
        """Yield the line read at open, then one Sample per further line; TelemetryError if the process dies."""
        if self._first is not None:
            first, self._first = self._first, None
            yield first
        while True:
            line = await self._stdout.readline()
            if not line:
                if self._closed:
                    return
                code = await self._process.wait()
                await self._stderr_task
                detail = f": {self._stderr[-1]}" if self._stderr else ""
                raise TelemetryError(f"{self._program} exited with code {code}{detail}")
            text = line.decode(errors="replace").strip()
            if text:
                yield _stamped(parse_tegrastats_line(text))

    async def close(self) -> None:
        """Stop the child process (SIGTERM, then SIGKILL after 2 s) and its stderr reader."""
        if self._closed:
            return
        self._closed = True
        await _stop(self._process)
        self._stderr_task.cancel()
        await asyncio.gather(self._stderr_task, return_exceptions=True)

    @property
    def pid(self) -> int:
        """Process id of the running tegrastats."""
        return self._process.pid


def _stamped(sample: Sample) -> Sample:
    return sample if sample.time is not None else dataclasses.replace(sample, time=datetime.now().astimezone())


async def _drain(stream: asyncio.StreamReader, tail: collections.deque[str]) -> None:
    # An unread stderr pipe would eventually block the child, so it is always read.
    async for raw in stream:
        text = raw.decode(errors="replace").strip()
        if text:
            log.debug("tegrastats stderr: %s", text)
            tail.append(text)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            await asyncio.wait_for(process.wait(), _STOP_GRACE_S)
            return
        except (TimeoutError, asyncio.TimeoutError):
            continue
    await process.wait()
