"""The cluster inventory: a TOML file of Jetson nodes validated into frozen dataclasses.

Which file is read (highest first): the ``--inventory`` option, then ``$LITESRL_INVENTORY``, then
``$XDG_CONFIG_HOME/litesrl/inventory.toml`` (``~/.config/litesrl/inventory.toml``). Inside the file a
node's own keys win over ``~/.ssh/config`` for its host alias, which wins over the ``[cluster]``
defaults (see :mod:`console.fleet.target`). ``assets/inventory.example.toml`` documents every key.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from console.errors import InventoryError
from engine.cwb.units import parse_size
from engine.errors import ConfigError

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

INVENTORY_ENV = "LITESRL_INVENTORY"

BOARDS = ("tx2", "xavier-nx", "agx-xavier", "orin-nano", "orin-nx", "agx-orin", "nano", "tx1", "generic")
"""Board models a node may declare; ``generic`` is any other Linux machine (or this one, emulated)."""


@dataclass(frozen=True)
class ClusterSpec:
    """The ``[cluster]`` table: settings shared by every node."""

    name: str = "litesrl"
    """Name of the cluster, shown by the console."""
    secret_file: Path | None = None
    """Local file holding the cluster shared secret, copied to each node by ``start``;
    None means ``$LITESRL_SECRET``, else ``$XDG_CONFIG_HOME/litesrl/cluster.secret``."""
    user: str | None = None
    """SSH user for nodes that name none and whose ``~/.ssh/config`` entry names none."""
    identity_file: Path | None = None
    """Private key for nodes that name none and whose ``~/.ssh/config`` entry names none
    (None: ssh-agent and the default ``~/.ssh/id_*`` keys)."""
    known_hosts: Path | None = None
    """known_hosts file host keys are checked against and ``trust`` appends to (None: ``~/.ssh/known_hosts``)."""
    ssh_config: Path | None = None
    """OpenSSH client config honoured for host aliases (None: ``~/.ssh/config`` when it exists)."""
    connect_timeout: float = 10.0
    """Seconds allowed to open and authenticate one SSH connection."""
    keepalive_interval: float = 15.0
    """Seconds between SSH keepalives; three unanswered in a row mark the node stale."""


@dataclass(frozen=True)
class InventoryNode:
    """One ``[[nodes]]`` entry: a board reachable over SSH that runs a node agent."""

    name: str
    """Unique node name (letters, digits, ``.``, ``_``, ``-``), used in commands and remote file names."""
    host: str
    """Host name, address or ``~/.ssh/config`` alias."""
    board: str
    """Board model, one of :data:`BOARDS`."""
    memory_budget: int
    """Bytes of memory the CWB partition search may plan on this node (the paper uses about 3 GB per TX2)."""
    port: int | None = None
    """SSH port (None: from ``~/.ssh/config``, else 22)."""
    user: str | None = None
    """SSH user (None: from ``~/.ssh/config``, else ``[cluster] user``, else the local user)."""
    identity_file: Path | None = None
    """Private key file (None: from ``~/.ssh/config``, else ``[cluster] identity_file``, else agent/defaults)."""
    data_path: str | None = None
    """Dataset folder on the node (None: this node reads no data, e.g. a middle pipeline stage)."""
    python: str = "python3"
    """Python on the node the venv is created from (JetPack's, so its torch is reused)."""
    workdir: str = "~/litesrl"
    """Folder on the node for the wheels, the agent's log, pid file and the cluster secret."""
    venv: str = "~/litesrl/venv"
    """Virtual environment on the node litesrl is installed into (default ``<workdir>/venv``)."""
    agent_port: int = 7700
    """TCP port the node agent listens on."""
    agent_bind: str = "0.0.0.0"
    """Address the agent binds; ``127.0.0.1`` keeps it private and the console reaches it by SSH forwarding."""
    tags: tuple[str, ...] = ()
    """Free labels for selecting nodes (``--tag``)."""


@dataclass(frozen=True)
class Inventory:
    """A validated inventory file."""

    path: Path
    """The file it was read from."""
    cluster: ClusterSpec
    """The ``[cluster]`` table."""
    nodes: tuple[InventoryNode, ...]
    """The nodes, in file order."""

    def node(self, name: str) -> InventoryNode:
        """The node called ``name``; raises :class:`InventoryError` naming the known nodes."""
        for node in self.nodes:
            if node.name == name:
                return node
        known = ", ".join(n.name for n in self.nodes)
        raise InventoryError(f"{self.path}: no node named {name!r} (nodes: {known})")

    def select(self, names: Iterable[str] = (), tags: Iterable[str] = ()) -> tuple[InventoryNode, ...]:
        """Nodes named in ``names`` (all when empty) that carry every tag in ``tags``, in file order."""
        wanted = {self.node(name).name for name in names}
        tags = set(tags)
        chosen = tuple(n for n in self.nodes if (not wanted or n.name in wanted) and tags <= set(n.tags))
        if not chosen:
            raise InventoryError(f"{self.path}: no node matches tags {sorted(tags)}")
        return chosen


def default_inventory_path() -> Path:
    """``$XDG_CONFIG_HOME/litesrl/inventory.toml`` (``~/.config/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "litesrl" / "inventory.toml"


def resolve_inventory_path(cli_path: str | os.PathLike | None = None) -> Path:
    """The inventory to read: ``cli_path``, else ``$LITESRL_INVENTORY``, else :func:`default_inventory_path`."""
    if cli_path:
        return Path(cli_path).expanduser()
    if os.environ.get(INVENTORY_ENV):
        return Path(os.environ[INVENTORY_ENV]).expanduser()
    default = default_inventory_path()
    if not default.is_file():
        raise InventoryError(
            f"no inventory: pass --inventory FILE, set ${INVENTORY_ENV}, or create {default} "
            "(assets/inventory.example.toml shows the format)"
        )
    return default


def load_inventory(path: str | os.PathLike | None = None) -> Inventory:
    """Read and validate an inventory (``path`` resolved by :func:`resolve_inventory_path`).

    Raises :class:`InventoryError` with a one-line ``FILE: WHERE: FIELD: PROBLEM`` message.
    """
    file = resolve_inventory_path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InventoryError(f"{file}: inventory file does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"{file}: cannot read the inventory: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InventoryError(f"{file}: not valid TOML: {exc}") from None
    return parse_inventory(data, file)


def parse_inventory(data: dict[str, Any], file: Path) -> Inventory:
    """Validate already-parsed TOML ``data`` read from ``file`` (relative paths are relative to its folder)."""
    top = _Table(data, file, "inventory", file.parent)
    top.check_keys({"cluster", "nodes"})
    cluster = _parse_cluster(_Table(top.table("cluster"), file, "[cluster]", file.parent))
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise InventoryError(f"{file}: no nodes: add at least one [[nodes]] table")
    nodes: list[InventoryNode] = []
    for index, raw in enumerate(raw_nodes, start=1):
        if not isinstance(raw, dict):
            raise InventoryError(f"{file}: node #{index}: must be a table ([[nodes]])")
        name = raw.get("name")
        where = f"node {name!r}" if isinstance(name, str) and name else f"node #{index}"
        nodes.append(_parse_node(_Table(raw, file, where, file.parent)))
    _check_unique(nodes, file)
    return Inventory(path=file, cluster=cluster, nodes=tuple(nodes))


def _parse_cluster(t: _Table) -> ClusterSpec:
    t.check_keys({"name", "secret_file", "user", "identity_file", "known_hosts", "ssh_config",
                  "connect_timeout", "keepalive_interval"})
    return ClusterSpec(
        name=t.string("name", default="litesrl"),
        secret_file=t.local_path("secret_file"),
        user=t.string("user", default=None),
        identity_file=t.local_path("identity_file"),
        known_hosts=t.local_path("known_hosts"),
        ssh_config=t.local_path("ssh_config"),
        connect_timeout=t.seconds("connect_timeout", 10.0),
        keepalive_interval=t.seconds("keepalive_interval", 15.0),
    )


NODE_KEYS = frozenset({"name", "host", "port", "user", "identity_file", "board", "memory_budget", "data_path",
                       "python", "workdir", "venv", "agent_port", "agent_bind", "tags"})
"""Keys of a ``[[nodes]]`` entry (CWB's nodes file reads the same entries: ``engine.cwb.nodes_spec``)."""


def _parse_node(t: _Table) -> InventoryNode:
    t.check_keys(set(NODE_KEYS))
    name = t.string("name", default=None, required=True)
    if not _NAME_RE.match(name):
        t.fail("name", f"{name!r} must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")
    board = t.string("board", default=None, required=True)
    if board not in BOARDS:
        t.fail("board", f"unknown board {board!r} (one of: {', '.join(BOARDS)})")
    budget = t.string("memory_budget", default=None, required=True)
    try:
        memory = parse_size(budget)
    except ConfigError as exc:
        t.fail("memory_budget", str(exc))
    if memory <= 0:
        t.fail("memory_budget", f"must be more than zero, got {budget!r}")
    host = t.string("host", default=None, required=True)
    workdir = t.remote_path("workdir", default="~/litesrl")
    if any(c.isspace() for c in host):
        t.fail("host", f"{host!r} contains whitespace")
    return InventoryNode(
        name=name,
        host=host,
        board=board,
        memory_budget=memory,
        port=t.port("port", default=None),
        user=t.string("user", default=None),
        identity_file=t.local_path("identity_file"),
        data_path=t.remote_path("data_path", default=None),
        python=t.remote_path("python", default="python3", bare_ok=True),
        workdir=workdir,
        venv=t.remote_path("venv", default=f"{workdir.rstrip('/')}/venv"),
        agent_port=t.port("agent_port", default=7700),
        agent_bind=t.string("agent_bind", default="0.0.0.0"),
        tags=t.tags("tags"),
    )


def _check_unique(nodes: list[InventoryNode], file: Path) -> None:
    seen: dict[Any, str] = {}
    for node in nodes:
        # Two nodes on one machine (an emulated rack) are fine, but not sharing a name, an agent
        # port or a workdir: the second agent would fail to bind or overwrite the first's pid file.
        for key, what in (
            (("name", node.name), "duplicate name"),
            (("port", node.host, node.agent_port), f"agent_port {node.agent_port} already used on host {node.host!r} by"),
            (("dir", node.host, node.workdir), f"workdir {node.workdir!r} already used on host {node.host!r} by"),
        ):
            if key in seen:
                detail = what if key[0] == "name" else f"{what} node {seen[key]!r}"
                raise InventoryError(f"{file}: node {node.name!r}: {detail}")
            seen[key] = node.name


class _Table:
    """Typed, message-producing access to one TOML table."""

    def __init__(self, data: Any, file: Path, where: str, base: Path):
        if not isinstance(data, dict):
            raise InventoryError(f"{file}: {where}: must be a table")
        self.data, self.file, self.where, self.base = data, file, where, base

    def fail(self, key: str, problem: str) -> NoReturn:
        raise InventoryError(f"{self.file}: {self.where}: {key}: {problem}")

    def check_keys(self, known: set[str]) -> None:
        for key in self.data:
            if key not in known:
                raise InventoryError(
                    f"{self.file}: {self.where}: unknown key {key!r} (known: {', '.join(sorted(known))})"
                )

    def table(self, key: str) -> dict[str, Any]:
        value = self.data.get(key, {})
        if not isinstance(value, dict):
            self.fail(key, "must be a table")
        return value

    def string(self, key: str, default: Any, required: bool = False) -> Any:
        if key not in self.data:
            if required:
                raise InventoryError(f"{self.file}: {self.where}: missing {key!r}")
            return default
        value = self.data[key]
        if not isinstance(value, str):
            self.fail(key, f"must be a string, got {_kind(value)}")
        if not value.strip():
            self.fail(key, "must not be empty")
        return value.strip()

    def port(self, key: str, default: int | None) -> int | None:
        if key not in self.data:
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            self.fail(key, f"must be an integer port 1-65535, got {value!r}")
        return value

    def seconds(self, key: str, default: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            self.fail(key, f"must be a positive number of seconds, got {value!r}")
        return float(value)

    def local_path(self, key: str) -> Path | None:
        value = self.string(key, default=None)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.base / path

    def remote_path(self, key: str, default: str | None, bare_ok: bool = False) -> str | None:
        value = self.string(key, default=default)
        if not value or value.startswith("/") or value.startswith("~/") or (bare_ok and "/" not in value):
            return value
        self.fail(key, f"remote path {value!r} must be absolute or start with '~/'")

    def tags(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.fail(key, f"must be a list of non-empty strings, got {value!r}")
        return tuple(v.strip() for v in value)


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__
    )
