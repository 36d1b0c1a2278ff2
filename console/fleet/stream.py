"""Streaming a remote command's stdout line by line (telemetry: ``tegrastats``, ``python -m nodes.telemetry``).

Usage::

    async with LineStream(conn, "tegrastats --interval 500") as lines:
        async for line in lines:
            ...

Leaving the block, breaking out, or cancelling the task stops the remote command: the console
sends it SIGTERM over the channel and closes the channel, so it also gets SIGPIPE on its next write.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator

import asyncssh

from console.errors import FleetError
from console.fleet.ssh import NodeConnection

log = logging.getLogger(__name__)

STDERR_TAIL = 20
"""stderr lines kept to explain a command that fails."""


class LineStream:
    """The stdout lines of one command running on a node; an async context manager and async iterator."""

    def __init__(self, conn: NodeConnection, command: str):
        self.conn = conn
        self.command = command
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL)
        """Last stderr lines of the command."""
        self._process: asyncssh.SSHClientProcess | None = None
        self._stderr_task: asyncio.Task | None = None
        self._finished = False

    async def __aenter__(self) -> LineStream:
        try:
            self._process = await self.conn.ssh.create_process(self.command, encoding="utf-8", errors="replace")
        except (asyncssh.Error, OSError) as exc:
            raise FleetError(f"{self.conn.node.name}: cannot start {self.command!r}: {exc}") from None
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[str]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[str]:
        if self._process is None:
            raise FleetError("LineStream used outside `async with`")
        async for line in self._process.stdout:
            if not line:  # asyncssh's reader ends with one empty read at EOF; a blank line is "\n"
                break
            yield line.rstrip("\r\n")
        completed = await self._process.wait()
        self._finished = True
        if self._stderr_task is not None:
            await self._stderr_task
        status = completed.exit_status
        if status not in (0, None) or completed.exit_signal is not None:
            detail = self.stderr_tail[-1] if self.stderr_tail else "no error output"
            how = f"exit {status}" if completed.exit_signal is None else f"signal {completed.exit_signal[0]}"
            # The cause first: a long command line before it would push it out of a narrow view.
            raise FleetError(f"{self.conn.node.name}: {detail} ({how} of {self.command!r})")

    async def _drain_stderr(self) -> None:
        # Unread stderr would fill the channel window and stall stdout, so it is always consumed.
        assert self._process is not None
        async for line in self._process.stderr:
            if line:
                self.stderr_tail.append(line.rstrip("\r\n"))

    async def close(self) -> None:
        """Stop the command if it still runs and close the channel (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        if not self._finished and process.exit_status is None:
            try:
                process.send_signal("TERM")
            except (asyncssh.Error, OSError) as exc:
                log.debug("%s: could not signal %r: %s", self.conn.node.name, self.command, exc)
        process.close()
        try:
            await asyncio.wait_for(process.wait_closed(), 5.0)
        except asyncio.TimeoutError:
            log.warning("%s: channel of %r did not close", self.conn.node.name, self.command)
        if self._stderr_task is not None:
            self._stderr_task.cancel()
