"""The address the console dials to reach a node's agent: direct, or through SSH local port forwarding.

An agent bound to the node's loopback (``agent_bind = "127.0.0.1"``) cannot be reached from the
network; the console then listens on a local port and SSH carries each connection to the node's
``127.0.0.1:<agent_port>`` (what ``ssh -L`` does).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import asyncssh

from console.errors import FleetError
from console.fleet.ssh import NodeConnection


@dataclass
class AgentEndpoint:
    """Where to connect to one node's agent; close it when done (it may hold a forwarding listener)."""

    node: str
    """Inventory name."""
    host: str
    """Address to connect to."""
    port: int
    """Port to connect to."""
    forwarded: bool
    """True when ``host:port`` is a local listener forwarding over SSH."""
    _listener: asyncssh.SSHListener | None = field(default=None, repr=False)

    async def close(self) -> None:
        """Stop the forwarding listener, if any (open forwarded connections are closed too)."""
        if self._listener is not None:
            self._listener.close()
            await self._listener.wait_closed()
            self._listener = None


def is_loopback(address: str) -> bool:
    """True for addresses only the node itself can reach (127.0.0.0/8, ::1, ``localhost``)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def forward_port(conn: NodeConnection, remote_port: int, remote_host: str = "127.0.0.1",
                       local_port: int = 0) -> AgentEndpoint:
    """Listen on ``127.0.0.1:<local_port>`` (0: any free port) and forward to ``remote_host:remote_port`` on the node."""
    try:
        listener = await conn.ssh.forward_local_port("127.0.0.1", local_port, remote_host, remote_port)
    except (asyncssh.Error, OSError) as exc:
        raise FleetError(f"{conn.node.name}: cannot forward local port "
                         f"{local_port} to {remote_host}:{remote_port}: {exc}") from None
    return AgentEndpoint(conn.node.name, "127.0.0.1", listener.get_port(), True, listener)


async def agent_endpoint(conn: NodeConnection) -> AgentEndpoint:
    """The address of the node's agent: forwarded when it binds loopback, else the node's own address."""
    node = conn.node
    if is_loopback(node.agent_bind):
        return await forward_port(conn, node.agent_port, node.agent_bind if node.agent_bind != "localhost" else "127.0.0.1")
    host = conn.target.hostname if node.agent_bind in ("0.0.0.0", "::") else node.agent_bind
    return AgentEndpoint(node.name, host, node.agent_port, False)
