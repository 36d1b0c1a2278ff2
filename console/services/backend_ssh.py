"""The fleet backend for real boards: an inventory's nodes over asyncssh, telemetry streamed from each node.

Each node runs ``python -m nodes.telemetry_main`` from its litesrl venv (jtop, else tegrastats, else
psutil, else /proc on the board; nothing beyond what JetPack ships) and the console reads one JSON
sample per line through an SSH channel, with the node agent's own CPU and memory beside it.
A node whose link fails is retried every :data:`RETRY_SECONDS`; its state (auth failed, host
key unknown or changed, timeout, unreachable, stale) is reported as it changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from console.errors import FleetError
from console.fleet.fleet import Fleet
from console.fleet.inventory import Inventory, InventoryNode
from console.fleet.profiles import keep, measured_profiles, profile_over
from console.fleet.remote import RemoteLayout, sh_join
from console.fleet.ssh import LinkState, NodeStatus, NodeUnavailable
from console.fleet.stream import LineStream
from console.fleet.target import resolve_target
from console.services.backend import AgentLoad, FleetBackend, NodeInfo, ProfileRequest, Reading, Update
from engine.cwb.profile_format import Profile
from nodes.errors import TelemetryError
from nodes.telemetry.json_form import sample_from_json

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0
"""Pause before reconnecting a node whose link or telemetry stream failed."""


def telemetry_command(node: InventoryNode, interval: float) -> str:
    """The remote command that streams a node's telemetry (and its agent's load) as JSON lines from its venv."""
    layout = RemoteLayout.for_node(node)
    return sh_join([layout.venv_python, "-m", "nodes.telemetry_main", "--interval", f"{interval:g}",
                    "--agent-pid-file", layout.pid_file, "--agent-name", node.name])


def reading_from_line(node: str, line: str, received: float) -> Reading:
    """A telemetry line of ``nodes.telemetry_main`` as a :class:`Reading` (ValueError/TelemetryError if malformed)."""
    document = json.loads(line)
    agent = document.get("agent")
    load = AgentLoad(int(agent["pid"]), float(agent["cpu_percent"]), int(agent["rss_bytes"]), int(agent["threads"])) \
        if isinstance(agent, dict) else None
    return Reading(node, sample_from_json(document), load, received)


class SSHBackend(FleetBackend):
    """The nodes of an inventory file, reached over SSH."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory
        self.title = f"{inventory.cluster.name} ({inventory.path.name})"
        self._infos: tuple[NodeInfo, ...] = ()
        self._fleets = {node.name: Fleet(inventory, [node]) for node in inventory.nodes}
        """One single-node Fleet per node, so each reconnects on its own schedule."""

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        return self._infos

    @property
    def cluster_argument(self) -> str:
        return str(self.inventory.path)

    async def start(self) -> None:
        """Resolve each node's SSH target (raises InventoryError for a broken ssh config); nothing is dialled."""
        infos = []
        for node in self.inventory.nodes:
            target = resolve_target(node, self.inventory.cluster)
            infos.append(NodeInfo(node.name, node.board, target.address, node.memory_budget))
        self._infos = tuple(infos)

    async def updates(self, interval: float) -> AsyncIterator[Update]:
        queue: asyncio.Queue[Update] = asyncio.Queue()
        tasks = [asyncio.create_task(self._follow(node, interval, queue.put_nowait)) for node in self.inventory.nodes]
        try:
            while True:
                yield await queue.get()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, node: InventoryNode, interval: float, emit: Callable[[Update], None]) -> None:
        """Connect ``node`` and stream its telemetry, forever; every failure is emitted as its status."""
        fleet = self._fleets[node.name]
        command = telemetry_command(node, interval)
        while True:
            await fleet.connect()
            status = fleet.status(node.name)
            emit(status)
            if status.ok:
                try:
                    await self._stream(fleet, node, command, emit)
                    reason = "telemetry stream ended"
                except NodeUnavailable as exc:
                    reason = exc.status.reason
                except (FleetError, TelemetryError, ValueError, KeyError, TypeError) as exc:
                    reason = str(exc)
                now = fleet.status(node.name)
                emit(now if not now.ok else NodeStatus(node.name, LinkState.STALE, reason))
            await asyncio.sleep(RETRY_SECONDS)

    async def _stream(self, fleet: Fleet, node: InventoryNode, command: str, emit: Callable[[Update], None]) -> None:
        async with LineStream(fleet.connection(node.name), command) as lines:
            async for line in lines:
                if line.startswith("{"):
                    emit(reading_from_line(node.name, line, time.monotonic()))

    async def profile(self, node: str, request: ProfileRequest, on_line: Callable[[str], None]) -> Profile:
        """Run ``python -m nodes.profile_main`` on the board (its own torch and GPU), keep and return the profile."""
        self.inventory.node(node)  # InventoryError naming the known nodes
        fleet = self._fleets[node]
        await fleet.connect()
        profile = await profile_over(fleet.connection(node), request.options(), on_line)
        path = keep(profile, self.inventory.cluster.name, node)
        on_line(f"kept {path}")
        return profile

    def measured_profiles(self) -> dict[str, Path]:
        """The profiles kept for this inventory's boards (by :meth:`profile` or ``litesrl nodes profile``), newest first."""
        kept: dict[str, Path] = {}
        for path in measured_profiles(self.inventory.cluster.name):
            node = path.stem.rsplit("-", 1)[0]
            if node in {n.name for n in self.inventory.nodes}:
                kept.setdefault(node, path)
        return kept

    async def close(self) -> None:
        await asyncio.gather(*(fleet.close() for fleet in self._fleets.values()))
