"""What the console knows about each node: its link state, its latest reading, a bounded history, staleness."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

from console.fleet.ssh import LinkState, NodeStatus
from console.services.backend import NodeInfo, Reading

HISTORY = 240
"""Readings kept per node for the history charts (four minutes at one per second)."""


@dataclass
class NodeView:
    """One node as the screens draw it."""

    info: NodeInfo
    """Static facts from the backend."""
    status: NodeStatus
    """The latest link state the backend reported."""
    latest: Reading | None = None
    """The latest reading, if any arrived."""
    history: collections.deque[Reading] = field(default_factory=lambda: collections.deque(maxlen=HISTORY))
    """Recent readings, oldest first."""

    def state(self, now: float, stale_after: float) -> LinkState:
        """The link state to show: up turns stale when no reading arrived for ``stale_after`` seconds."""
        if self.status.state is LinkState.UP and self.latest is not None and now - self.latest.received > stale_after:
            return LinkState.STALE
        return self.status.state

    def age(self, now: float) -> float | None:
        """Seconds since the latest reading, None before the first."""
        return None if self.latest is None else now - self.latest.received

    def figure(self, name: str) -> list[float | None]:
        """History of one figure (see :meth:`figure_of`), oldest first."""
        return [self.figure_of(reading, name) for reading in self.history]

    def figure_of(self, reading: Reading, name: str) -> float | None:
        """A headline figure of a reading: ``cpu``, ``gpu``, ``ram`` (percent), ``temp`` (°C), ``power`` (mW).

        On the emulated cluster a node *is* its agent process, so ``cpu`` is the agent's share of
        one core and ``ram`` its resident memory against the node's memory budget; the host's
        figures stay in the sample for the node detail screen.
        """
        sample, agent = reading.sample, reading.agent
        if name == "cpu":
            return agent.cpu_percent if agent is not None else sample.cpu_percent
        if name == "gpu":
            return sample.gpu_percent
        if name == "ram":
            if agent is not None:
                return 100.0 * agent.rss_bytes / self.info.memory_budget
            return sample.ram_percent
        if name == "temp":
            return sample.max_temp_c
        if name == "power":
            power = sample.total_power_mw
            return None if power is None else float(power)
        raise KeyError(f"unknown figure {name!r}")

    def memory_mb(self) -> tuple[float, float] | None:
        """(used, total) MB of the latest reading: agent memory against the budget, else the board's RAM."""
        if self.latest is None:
            return None
        if self.latest.agent is not None:
            return self.latest.agent.rss_bytes / 2**20, self.info.memory_budget / 2**20
        ram = self.latest.sample.ram
        return None if ram is None else (float(ram.used_mb), float(ram.total_mb))


class FleetStore:
    """Every node's :class:`NodeView`, in the backend's order; updated only by the app's message handlers."""

    def __init__(self) -> None:
        self._views: dict[str, NodeView] = {}

    def set_nodes(self, nodes: Iterable[NodeInfo]) -> None:
        """(Re)declare the nodes; views of nodes that stay keep their state and history."""
        views = {}
        for info in nodes:
            old = self._views.get(info.name)
            if old is not None:
                old.info = info
                views[info.name] = old
            else:
                views[info.name] = NodeView(info, NodeStatus(info.name, LinkState.UNREACHABLE, "connecting"))
        self._views = views

    @property
    def names(self) -> list[str]:
        """Node names in order."""
        return list(self._views)

    def views(self) -> list[NodeView]:
        """Every view in order."""
        return list(self._views.values())

    def get(self, name: str) -> NodeView | None:
        """The view of ``name``, None for a node the backend does not list."""
        return self._views.get(name)

    def apply_status(self, status: NodeStatus) -> bool:
        """Record a link state; False when the node is unknown or the state did not change."""
        view = self._views.get(status.node)
        if view is None or view.status == status:
            return False
        view.status = status
        return True

    def apply_reading(self, reading: Reading) -> bool:
        """Record a reading (a reading also means the link is up); False for an unknown node."""
        view = self._views.get(reading.node)
        if view is None:
            return False
        view.latest = reading
        view.history.append(reading)
        if view.status.state is not LinkState.UP:
            view.status = NodeStatus(reading.node, LinkState.UP)
        return True

    def count_up(self, now: float, stale_after: float) -> int:
        """Nodes whose link is up and fresh."""
        return sum(1 for view in self._views.values() if view.state(now, stale_after) is LinkState.UP)
