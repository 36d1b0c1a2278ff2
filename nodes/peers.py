"""Data connections from this node to its peers: opened on first use, authenticated, kept for later chains."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from engine.dhp.protocol import Op
from nodes.errors import NodeError
from nodes.op_frames import send_op
from nodes.wire import Connection, connect
from nodes.wire.keys import Credentials

log = logging.getLogger(__name__)


class PeerPool:
    """Outgoing connections keyed by ``(host, port)``; only this node sends on them (peers answer on their own)."""

    def __init__(self, secret: bytes | Credentials, timeout: float, protect: str = "integrity") -> None:
        self._secret = secret
        self._timeout = timeout
        self._protect = protect
        self._conns: dict[tuple[str, int], Connection] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def send(self, host: str, port: int, op: Op, header: Mapping[str, Any], tensors: Sequence[torch.Tensor] = (),
                   *, node: str | None = None) -> None:
        """Send one data message to the node at ``host:port`` (which must prove it is ``node`` when given);
        raises NodeError when it cannot be delivered.

        A kept connection may have died since its last use (the peer restarted): the message is then
        sent once more on a fresh connection, which is safe because nothing of a frame is processed
        before all of it has arrived.
        """
        key = (host, port)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            for attempt in (1, 2):
                conn = self._conns.get(key)
                if conn is not None and conn.peer_has_closed():
                    # The peer let it go (idle timeout, restart): a send would "succeed" into the void.
                    log.info("kept connection to %s:%d was closed by the peer; reconnecting", host, port)
                    conn.close()
                    conn = None
                fresh = conn is None or conn.closed
                if fresh or conn is None:  # (fresh already covers None: spelled out for the type checker)
                    conn = await connect(host, port, self._secret, self._timeout, expect=node, protect=self._protect)
                    self._conns[key] = conn
                    log.debug("opened a data connection to %s:%d", host, port)
                try:
                    await send_op(conn, op, header, tensors)
                    return
                except NodeError as exc:
                    conn.close()
                    self._conns.pop(key, None)
                    if fresh or attempt == 2:
                        raise
                    log.info("kept connection to %s:%d failed (%s); reconnecting", host, port, exc)

    def close(self) -> None:
        """Close every kept connection."""
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()
