"""The fleet: concurrent SSH connections to a set of inventory nodes and per-node action outcomes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncssh

from console.errors import FleetError
from console.fleet.inventory import Inventory, InventoryNode
from console.fleet.ssh import LinkState, NodeConnection, NodeStatus, NodeUnavailable, open_ssh

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class NodeOutcome(Generic[T]):
    """What one fleet action did on one node."""

    node: str
    """Inventory name."""
    status: NodeStatus
    """The node's SSH link after the action."""
    value: T | None = None
    """The action's typed result, when it completed."""
    error: str | None = None
    """Why the action failed on a node whose link was up."""

    @property
    def ok(self) -> bool:
        """True when the action completed (actions always return a result, never None)."""
        return self.error is None and self.value is not None


class Fleet:
    """SSH connections to ``nodes`` (default: every node of ``inventory``), opened concurrently.

    Use as ``async with Fleet(inventory) as fleet: outcomes = await fleet.each(action)``; leaving
    the block closes every connection.
    """

    def __init__(self, inventory: Inventory, nodes: Iterable[InventoryNode] | None = None):
        self.inventory = inventory
        self.nodes: tuple[InventoryNode, ...] = tuple(nodes) if nodes is not None else inventory.nodes
        self._connections: dict[str, NodeConnection] = {}
        self._failures: dict[str, NodeStatus] = {}

    async def __aenter__(self) -> Fleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self) -> list[NodeStatus]:
        """Connect every node that is not up (stale ones are reconnected); returns each node's status."""

        async def one(node: InventoryNode) -> None:
            current = self._connections.get(node.name)
            if current is not None:
                if current.status.ok:
                    return
                await current.close()
                del self._connections[node.name]
            try:
                self._connections[node.name] = await open_ssh(node, self.inventory.cluster)
                self._failures.pop(node.name, None)
            except NodeUnavailable as exc:
                log.info("%s", exc)
                self._failures[node.name] = exc.status

        await asyncio.gather(*(one(node) for node in self.nodes))
        return self.statuses()

    def statuses(self) -> list[NodeStatus]:
        """The current status of every node, in inventory order (stale links show as stale)."""
        return [self.status(node.name) for node in self.nodes]

    def status(self, name: str) -> NodeStatus:
        """The current status of node ``name``."""
        if name in self._connections:
            return self._connections[name].status
        return self._failures.get(name, NodeStatus(name, LinkState.UNREACHABLE, "not connected yet"))

    def connection(self, name: str) -> NodeConnection:
        """The live connection to node ``name``; raises :class:`NodeUnavailable` when it is not up."""
        status = self.status(name)
        if not status.ok:
            raise NodeUnavailable(status)
        return self._connections[name]

    async def each(self, action: Callable[[NodeConnection], Awaitable[T]]) -> list[NodeOutcome[T]]:
        """Connect, then run ``action`` concurrently on every node that is up.

        A failure on one node (a :class:`FleetError`, SSH or OS error) becomes that node's outcome;
        the others carry on. Outcomes come back in inventory order.
        """
        await self.connect()

        async def one(node: InventoryNode) -> NodeOutcome[T]:
            try:
                conn = self.connection(node.name)
                value = await action(conn)
            except NodeUnavailable as exc:
                return NodeOutcome(node.name, exc.status)
            except (FleetError, asyncssh.Error, OSError) as exc:
                log.info("%s: %s", node.name, exc)
                return NodeOutcome(node.name, self.status(node.name), error=_strip_node(str(exc), node.name))
            return NodeOutcome(node.name, self.status(node.name), value=value)

        return list(await asyncio.gather(*(one(node) for node in self.nodes)))

    async def close(self) -> None:
        """Close every connection."""
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(conn.close() for conn in connections), return_exceptions=True)


def _strip_node(message: str, node: str) -> str:
    # Errors name their node for standalone use; inside a per-node outcome that prefix is noise.
    prefix = f"{node}: "
    return message[len(prefix):] if message.startswith(prefix) else message
