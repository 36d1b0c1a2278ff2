"""The nodes a training run talks to: the emulated cluster, or an inventory's boards over SSH.

Either way the result is a :class:`ClusterSession`: a control link per node (``nodes.client``), where
peers reach each node, how to redial a node that rejoins, and what the plan needs to know of the
cluster (network, profile, budgets, data paths). The SSH path starts each node's agent (``console.fleet``)
and reaches it directly, or through SSH port forwarding when the agent binds loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from console.errors import ConsoleError

AGENT_START_PATIENCE = 60.0
"""Seconds a just-started agent may take to listen (importing torch on a board takes a while)."""


@dataclass
class ClusterSession:
    """An open cluster, ready for a coordinator."""

    description: str
    """One line for people."""
    links: dict
    """Node name -> ``nodes.client.NodeClient`` (control link)."""
    addresses: dict[str, tuple[str, int]]
    """Where peers reach each node's agent."""
    reconnect: Callable[[str], Awaitable[object]]
    """Opens a fresh control link to a node (for a restarted node that rejoins)."""
    bandwidth: float
    """Link rate the plan assumes, bytes/s."""
    latency_ms: float
    """Per-message latency the plan assumes."""
    profile: str | None = None
    """The cluster's default profile (the emulated boards'), else None."""
    time_scale: float | None = None
    """Emulated time scale, None for real boards."""
    memory_accounting: str | None = None
    """How the cluster's budgets are meant (``exact`` or ``paper``), None when it does not say."""
    budgets: dict[str, int] = field(default_factory=dict)
    """Memory budgets the plan must respect (the inventory's), overriding what agents report."""
    data_paths: dict[str, str] = field(default_factory=dict)
    """Per-node dataset folders (the inventory's ``data_path``)."""
    _cleanup: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    async def close(self) -> None:
        """Close the links and anything the session opened (forwardings, SSH connections)."""
        for link in self.links.values():
            link.close()
        for step in reversed(self._cleanup):
            with contextlib.suppress(Exception):
                await step()


async def open_local(timeout: float = 10.0) -> ClusterSession:
    """Links to the emulated cluster that ``litesrl cluster up`` started."""
    from console.cluster.local import require_state
    from engine.cwb.units import parse_bandwidth, parse_duration_ms
    from nodes.client import connect_node
    from nodes.wire import load_secret

    state = require_state()
    secret = load_secret(state.secret_file)
    addresses = {agent.name: (agent.host, agent.port) for agent in state.agents}

    async def reconnect(name: str):
        host, port = addresses[name]
        return await connect_node(name, host, port, secret, timeout)

    links = await _open_all(addresses, reconnect)
    return ClusterSession(
        description=f"local emulated cluster: {len(links)} × {state.profile} at time scale {state.time_scale:g}",
        links=links, addresses=addresses, reconnect=reconnect, bandwidth=parse_bandwidth(state.bandwidth),
        latency_ms=parse_duration_ms(state.latency), profile=state.profile, time_scale=state.time_scale,
        memory_accounting=state.memory_accounting,
    )


async def open_inventory(path: Path, bandwidth: float, latency_ms: float, timeout: float = 10.0) -> ClusterSession:
    """Start the agent of every inventory node over SSH and open control links to them."""
    from console.fleet.agent import start_agent
    from console.fleet.fleet import Fleet
    from console.fleet.forward import agent_endpoint, is_loopback
    from console.fleet.inventory import load_inventory
    from console.fleet.profiles import inventory_profile
    from console.fleet.secret import cluster_secret
    from console.fleet.target import resolve_target
    from nodes.client import connect_node

    inventory = load_inventory(path)
    secret = cluster_secret(inventory.cluster).secret
    if len(inventory.nodes) > 1:
        private = [node.name for node in inventory.nodes if is_loopback(node.agent_bind)]
        if private:
            raise ConsoleError(f"node(s) {', '.join(private)} bind their agent to loopback, but DHP chains need "
                               "node-to-node links: set agent_bind to the node's rack LAN address (or 0.0.0.0), "
                               "then `litesrl nodes start --restart`")
    fleet = Fleet(inventory)
    session = ClusterSession(description=f"{inventory.cluster.name}: {len(inventory.nodes)} board(s) over SSH",
                             links={}, addresses={}, reconnect=None, bandwidth=bandwidth, latency_ms=latency_ms,
                             profile=inventory_profile(inventory))
    session._cleanup.append(fleet.close)
    try:
        for outcome in await fleet.each(lambda conn: start_agent(conn, secret)):
            if not outcome.ok:
                raise ConsoleError(f"{outcome.node}: cannot start its agent: {outcome.error or outcome.status.reason}")
        endpoints = {}
        for node in inventory.nodes:
            endpoint = await agent_endpoint(fleet.connection(node.name))
            session._cleanup.append(endpoint.close)
            endpoints[node.name] = (endpoint.host, endpoint.port)
            host = resolve_target(node, inventory.cluster).hostname if node.agent_bind in ("0.0.0.0", "::") else node.agent_bind
            session.addresses[node.name] = (host, node.agent_port)
            session.budgets[node.name] = node.memory_budget
            if node.data_path:
                session.data_paths[node.name] = node.data_path

        async def reconnect(name: str, patience: float = 0.0):
            host, port = endpoints[name]
            return await connect_node(name, host, port, secret, timeout, patience=patience)

        session.reconnect = reconnect
        # Agents started just now may still be importing torch: give them a minute to listen.
        session.links = await _open_all(endpoints, lambda name: reconnect(name, AGENT_START_PATIENCE))
    except BaseException:
        await session.close()
        raise
    return session


async def _open_all(names, opener) -> dict:
    """A link per node, opened concurrently; if any fails, the others are closed and the error raised."""
    names = list(names)
    results = await asyncio.gather(*(opener(name) for name in names), return_exceptions=True)
    failure = next((r for r in results if isinstance(r, BaseException)), None)
    if failure is not None:
        for result in results:
            if not isinstance(result, BaseException):
                result.close()
        raise failure
    return dict(zip(names, results))
