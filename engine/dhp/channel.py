"""The coordinator's session with one node: a reader task, request/answer matching, heartbeats, loss detection."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from engine.deadline import within
from engine.dhp.protocol import LinkError, LinkTimeout, Message, NodeLink, Op
from engine.errors import EngineError

log = logging.getLogger(__name__)

OnMessage = Callable[[str, Message], None]
"""Called with (node, message) for every report that is not the answer to a request."""
OnLost = Callable[[str, str], None]
"""Called once with (node, reason) when the link fails or the node stops answering."""


class NodeRequestError(EngineError):
    """A node answered a request with ERROR (the reason is the node's)."""


class NodeChannel:
    """Wraps a :class:`NodeLink`: ``request`` awaits the matching answer, everything else goes to ``on_message``."""

    _ids = itertools.count(1)

    def __init__(self, link: NodeLink, on_message: OnMessage, on_lost: OnLost) -> None:
        self.link = link
        self.name = link.name
        self.info: dict[str, Any] = {}
        """The node's ATTACHED answer (budget, emulated board, data path...)."""
        self.lost: str | None = None
        """Why the node is lost, or None while it is alive."""
        self._on_message, self._on_lost = on_message, on_lost
        self._pending: dict[int, asyncio.Future] = {}
        self._last_heard = time.monotonic()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._heartbeat: asyncio.Task | None = None
        self._closing = False

    async def attach(self, run: str, timeout: float) -> dict[str, Any]:
        """ATTACH as this run's coordinator; returns (and keeps in ``info``) the node's description."""
        answer = await self.request(Op.ATTACH, {"run": run}, timeout=timeout, expect=(Op.ATTACHED,))
        self.info = dict(answer.header)
        if self.info.get("name") != self.name:
            raise EngineError(f"the agent at {self.name}'s address calls itself {self.info.get('name')!r}")
        return self.info

    async def request(self, op: Op, header: Mapping[str, Any] | None = None, tensors: Sequence[torch.Tensor] = (),
                      *, timeout: float, expect: Sequence[Op]) -> Message:
        """Send ``op`` and wait up to ``timeout`` s for its answer (one of ``expect``).

        Raises LinkTimeout, LinkError (also when the node is or gets lost) or NodeRequestError.
        """
        if self.lost:
            raise LinkError(f"{self.name} is lost: {self.lost}")
        req = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        try:
            await self.link.send(op, {**(header or {}), "req": req}, tensors)
            answer: Message = await within(future, timeout)
        except asyncio.TimeoutError:
            # A node that does not answer in time is hung or cut off: it is lost either way.
            self.mark_lost(f"no answer to {op.value} within {timeout:g} s")
            raise LinkTimeout(f"{self.name} did not answer {op.value} within {timeout:g} s") from None
        finally:
            self._pending.pop(req, None)
        if answer.op is Op.ERROR:
            raise NodeRequestError(f"{self.name}: {answer.header.get('reason', 'no reason given')}")
        if answer.op not in expect:
            raise LinkError(f"{self.name} answered {op.value} with {answer.op.value}")
        return answer

    async def send(self, op: Op, header: Mapping[str, Any] | None = None) -> bool:
        """Send a command; a failure marks the node lost (reported through ``on_lost``) and returns False."""
        if self.lost or self._closing:
            return False
        try:
            await self.link.send(op, header)
            return True
        except LinkError as exc:
            self.mark_lost(str(exc).removeprefix(f"{self.name}: "))
            return False

    def start_heartbeat(self, interval: float, timeout: float) -> None:
        """PING every ``interval`` s; a node silent for ``timeout`` s is lost (a hung or cut-off node)."""
        if self._heartbeat is None:
            self._last_heard = time.monotonic()
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat(interval, timeout))

    async def close(self) -> None:
        """Stop the tasks and close the link (the node stays up for the next run)."""
        self._closing = True
        tasks = [t for t in (self._heartbeat, self._reader) if t is not None]
        for task in tasks:
            task.cancel()
        # Closed before waiting for the tasks: one whose cancellation was lost (``engine.deadline``, Python 3.10)
        # then fails on the closed link at once instead of waiting for the node's next frame.
        self.link.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending(LinkError(f"{self.name}: channel closed"))

    def mark_lost(self, reason: str) -> None:
        """Declare the node lost (once): fail pending requests, close the link, tell ``on_lost``. Not while
        closing: the link failing then is the close itself."""
        if self.lost or self._closing:
            return
        self.lost = reason
        log.warning("node %s lost: %s", self.name, reason)
        self._fail_pending(LinkError(f"{self.name} is lost: {reason}"))
        self.link.close()
        self._on_lost(self.name, reason)

    def _fail_pending(self, error: Exception) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()

    async def _read(self) -> None:
        try:
            while True:
                message = await self.link.recv(timeout=24 * 3600.0)
                self._last_heard = time.monotonic()
                req = message.header.get("req")
                future = self._pending.get(req) if isinstance(req, int) else None
                if future is not None and not future.done():
                    future.set_result(message)
                elif message.op is not Op.PONG:
                    self._on_message(self.name, message)
        except LinkError as exc:
            self.mark_lost(str(exc).removeprefix(f"{self.name}: "))

    async def _beat(self, interval: float, timeout: float) -> None:
        while not (self.lost or self._closing):
            await asyncio.sleep(interval)
            silent = time.monotonic() - self._last_heard
            if silent > timeout:
                self.mark_lost(f"no answer for {silent:.0f} s")
                return
            await self.send(Op.PING, {})
