"""The boards CWB partitions for: speed relative to the profiled board, memory budget, and the nodes file.

A nodes file (``--nodes-file mixed.toml``) describes a mixed cluster in the inventory's format
(``assets/inventory.example.toml``: ``[[nodes]]``, ``name``, ``board``, ``memory_budget``), plus what
only planning needs (``count``, ``speed``, ``[network]``, ``[[link]]``); so a rack's inventory is itself
a nodes file (its SSH keys and ``[cluster]`` are ignored here)::

    [network]              # optional; the command line wins over it
    bandwidth = "1Gbit"
    latency = "0.2ms"

    [[nodes]]
    name = "tx2"           # with count = 3: tx2-1, tx2-2, tx2-3
    count = 3
    board = "tx2"
    speed = 1.0            # compute time = profiled time / speed
    memory_budget = "3GB"  # budget for one partition's training state

    [[nodes]]
    name = "orin"
    board = "agx-orin"
    speed = 2.0
    memory_budget = "12GB"

    [[link]]               # optional per-direction overrides
    from = "orin"
    to = "tx2-1"
    bandwidth = "10Gbit"
"""

from __future__ import annotations

import sys
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.cwb.transfer import Network
from engine.cwb.units import parse_bandwidth, parse_duration_ms, parse_size
from engine.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 ships no tomllib; pyproject pulls tomli there
    import tomli as tomllib


@dataclass(frozen=True)
class NodeSpec:
    """One board as the partition search sees it."""

    name: str
    """Unique name, used in reports and in per-link bandwidths."""

    memory_bytes: int
    """Memory one partition may use on this board (the paper used about 3 GB per 8 GB TX2)."""

    speed: float = 1.0
    """Compute speed relative to the board the profile was measured on: time = profile time / speed."""

    board: str = "Jetson TX2"
    """Board model, for people reading the report."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a node needs a non-empty name")
        if not self.speed > 0:
            raise ConfigError(f"node {self.name}: speed must be greater than zero, got {self.speed!r}")
        if self.memory_bytes <= 0:
            raise ConfigError(f"node {self.name}: memory must be greater than zero, got {self.memory_bytes!r}")


@dataclass(frozen=True)
class NodesFile:
    """What a nodes file holds: the nodes in file order and the network settings it gives."""

    nodes: tuple[NodeSpec, ...]
    """Every node, ``count`` expanded, in file order."""

    bandwidth: float | None
    """``[network] bandwidth`` in bytes/s, or None when the file leaves it to the command line."""

    latency_ms: float | None
    """``[network] latency`` in ms, or None."""

    links: tuple[tuple[str, str, float], ...]
    """``[[link]]`` overrides as ``(from, to, bytes_per_second)``."""

    def network(self, bandwidth: float | None = None, latency_ms: float | None = None) -> Network:
        """The network, with explicit arguments (the command line) taking precedence over the file."""
        rate = bandwidth if bandwidth is not None else self.bandwidth
        if rate is None:
            raise ConfigError("no bandwidth given: pass --bandwidth or set [network] bandwidth in the nodes file")
        delay = latency_ms if latency_ms is not None else (self.latency_ms or 0.0)
        return Network(bandwidth=rate, latency_ms=delay, links=self.links)


NODE_KEYS = frozenset({"name", "count", "board", "speed", "memory_budget"})
"""What a ``[[nodes]]`` entry tells the planner."""
INVENTORY_ONLY_KEYS = frozenset({"host", "port", "user", "identity_file", "data_path", "python", "workdir", "venv",
                                 "agent_port", "agent_bind", "tags"})
"""Keys of an inventory's ``[[nodes]]`` entry that only the console uses (``console.fleet.inventory``), ignored here."""


def identical_nodes(count: int, memory_bytes: int, *, speed: float = 1.0, board: str = "Jetson TX2") -> tuple[NodeSpec, ...]:
    """``count`` identical nodes named ``node-1 .. node-N`` with ``memory_bytes`` each."""
    if count < 1:
        raise ConfigError(f"node count must be at least 1, got {count}")
    return tuple(NodeSpec(f"node-{i}", memory_bytes, speed, board) for i in range(1, count + 1))


def load_nodes_file(path: str | Path) -> NodesFile:
    """Read and validate a nodes TOML file; every problem is a ConfigError naming the file and the entry."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: nodes file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read nodes file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if "node" in data:
        raise ConfigError(f"{path}: [[node]] is the old name of [[nodes]] (the inventory's format): rename it")
    unknown = set(data) - {"network", "nodes", "link", "cluster"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; expected [network], [[nodes]], [[link]]")
    try:
        nodes = _nodes(data.get("nodes"))
        network = _table(data.get("network", {}), "[network]", {"bandwidth", "latency"})
        bandwidth = parse_bandwidth(network["bandwidth"]) if "bandwidth" in network else None
        latency = parse_duration_ms(network["latency"]) if "latency" in network else None
        links = _links(data.get("link", []), {node.name for node in nodes})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return NodesFile(nodes=nodes, bandwidth=bandwidth, latency_ms=latency, links=links)


def _table(value: Any, where: str, allowed: AbstractSet[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(value) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return value


def _nodes(entries: Any) -> tuple[NodeSpec, ...]:
    if not isinstance(entries, list) or not entries:
        raise ConfigError("no [[nodes]] entries")
    nodes: list[NodeSpec] = []
    for index, entry in enumerate(entries, start=1):
        where = f"[[nodes]] #{index}"
        if isinstance(entry, dict) and "memory" in entry:
            raise ConfigError(f"{where}: 'memory' is the old name of 'memory_budget' (the inventory's key): rename it")
        entry = _table(entry, where, NODE_KEYS | INVENTORY_ONLY_KEYS)
        for key in ("name", "memory_budget"):
            if key not in entry:
                raise ConfigError(f"{where}: missing {key!r}")
        name, count = entry["name"], entry.get("count", 1)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' must be a non-empty string")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ConfigError(f"{where} ({name}): 'count' must be a positive integer, got {count!r}")
        speed = entry.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or isinstance(speed, bool):
            raise ConfigError(f"{where} ({name}): 'speed' must be a number, got {speed!r}")
        board = entry.get("board", "Jetson TX2")
        if not isinstance(board, str):
            raise ConfigError(f"{where} ({name}): 'board' must be a string")
        try:
            memory = parse_size(entry["memory_budget"])
            names = [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]
            nodes.extend(NodeSpec(each, memory, float(speed), board) for each in names)
        except ConfigError as exc:
            raise ConfigError(f"{where} ({name}): {exc}") from None
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:
            raise ConfigError(f"node name {node.name!r} is used twice")
        seen.add(node.name)
    return tuple(nodes)


def _links(entries: Any, names: set[str]) -> tuple[tuple[str, str, float], ...]:
    if not isinstance(entries, list):
        raise ConfigError("[[link]] must be an array of tables")
    links = []
    for index, entry in enumerate(entries, start=1):
        where = f"[[link]] #{index}"
        entry = _table(entry, where, {"from", "to", "bandwidth"})
        for key in ("from", "to", "bandwidth"):
            if key not in entry:
                raise ConfigError(f"{where}: missing {key!r}")
        for key in ("from", "to"):
            if entry[key] not in names:
                raise ConfigError(f"{where}: {key!r} names unknown node {entry[key]!r}")
        try:
            links.append((entry["from"], entry["to"], parse_bandwidth(entry["bandwidth"])))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(links)
