"""The coordinator's end of a control connection: ``engine.dhp.protocol.NodeLink`` over the wire transport."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from engine.dhp.protocol import LinkError, LinkTimeout, Message, Op
from nodes.errors import AuthError, NodeError
from nodes.op_frames import recv_op, send_op
from nodes.wire import Connection, TransportTimeout, connect
from nodes.wire.keys import Credentials


class NodeClient:
    """A NodeLink to the agent ``name``; transport failures surface as :class:`LinkError` (engine's family)."""

    def __init__(self, name: str, conn: Connection) -> None:
        self.name = name
        self._conn = conn

    @property
    def peer(self) -> str:
        """``host:port`` of the agent."""
        return self._conn.peer

    async def send(self, op: Op, header: Mapping[str, Any] | None = None, tensors: Sequence[torch.Tensor] = ()) -> None:
        """Send one op; raises LinkError / LinkTimeout."""
        try:
            await send_op(self._conn, op, header, tensors)
        except TransportTimeout as exc:
            raise LinkTimeout(f"{self.name}: {exc}") from None
        except NodeError as exc:
            raise LinkError(f"{self.name}: {exc}") from None

    async def recv(self, timeout: float | None = None) -> Message:
        """The next op from the agent; raises LinkError / LinkTimeout."""
        try:
            return await recv_op(self._conn, timeout=timeout)
        except TransportTimeout as exc:
            raise LinkTimeout(f"{self.name}: {exc}") from None
        except NodeError as exc:
            raise LinkError(f"{self.name}: {exc}") from None

    def close(self) -> None:
        self._conn.close()


async def connect_node(name: str, host: str, port: int, secret: bytes | Credentials, timeout: float = 10.0,
                       *, patience: float = 0.0, protect: str = "integrity") -> NodeClient:
    """Open and authenticate a control connection, in the coordinator role, to the agent ``name`` at
    ``host:port`` (which must prove it is ``name``); raises LinkError.

    ``patience`` > 0 keeps retrying a refused or dropped connection for that many seconds: an agent
    just started may still be importing torch (a wrong secret fails at once).
    """
    deadline = asyncio.get_running_loop().time() + patience
    while True:
        try:
            conn = await connect(host, port, secret, timeout, role="coordinator", expect=name, protect=protect)
            return NodeClient(name, conn)
        except AuthError as exc:
            raise LinkError(f"{name}: {exc}") from None
        except NodeError as exc:
            if asyncio.get_running_loop().time() >= deadline:
                raise LinkError(f"{name}: {exc}") from None
        await asyncio.sleep(0.25)
