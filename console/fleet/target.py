"""Where and as whom to SSH into a node: inventory keys merged with ``~/.ssh/config`` (via asyncssh).

Precedence for each setting: the node's own inventory key, then the ``Host`` entry of the OpenSSH
client config that matches the node's ``host`` (HostName, Port, User, IdentityFile), then the
``[cluster]`` default, then the SSH default (port 22, the local user, ssh-agent and ``~/.ssh/id_*``).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from console.errors import InventoryError
from console.fleet.inventory import ClusterSpec, InventoryNode

DEFAULT_SSH_PORT = 22


@dataclass(frozen=True)
class SSHTarget:
    """The effective SSH parameters of one node."""

    node: str
    """Inventory name of the node."""
    alias: str
    """The inventory's ``host`` (possibly an ssh config alias), what asyncssh is asked to connect to."""
    hostname: str
    """The real host name or address after the ssh config's HostName."""
    port: int
    """SSH port."""
    username: str
    """Login user."""
    identity_files: tuple[Path, ...]
    """Private keys to offer; empty means ssh-agent plus the default ``~/.ssh/id_*`` keys."""
    known_hosts: Path
    """known_hosts file the host key is verified against."""
    ssh_config: Path | None
    """OpenSSH client config in effect, if any."""
    host_key_alias: str | None
    """The ssh config's HostKeyAlias: the name host keys are stored under instead of ``hostname``."""

    @property
    def address(self) -> str:
        """``user@host:port`` for messages."""
        return f"{self.username}@{self.hostname}:{self.port}"

    @property
    def known_hosts_name(self) -> str:
        """The name this host's key is stored under in known_hosts (``[host]:port`` off port 22), as OpenSSH writes it."""
        name = self.host_key_alias or self.hostname
        return name if self.port == DEFAULT_SSH_PORT else f"[{name}]:{self.port}"


def default_known_hosts() -> Path:
    """The user's ``~/.ssh/known_hosts``."""
    return Path.home() / ".ssh" / "known_hosts"


def ssh_config_path(cluster: ClusterSpec) -> Path | None:
    """The ssh config to honour: the inventory's ``ssh_config``, else ``~/.ssh/config`` if readable."""
    if cluster.ssh_config is not None:
        if not cluster.ssh_config.is_file():
            raise InventoryError(f"[cluster] ssh_config: {cluster.ssh_config} does not exist")
        return cluster.ssh_config
    default = Path.home() / ".ssh" / "config"
    return default if os.access(default, os.R_OK) else None


def resolve_target(node: InventoryNode, cluster: ClusterSpec) -> SSHTarget:
    """Merge ``node``, the ssh config and ``cluster`` into the parameters used to connect.

    Raises :class:`InventoryError` if the ssh config cannot be parsed.
    """
    config_path = ssh_config_path(cluster)
    try:
        # Options with no keys and no known_hosts only parse the config; nothing is read or dialled.
        options = asyncssh.SSHClientConnectionOptions(
            config=[str(config_path)] if config_path else None,
            host=node.host,
            client_keys=None,
            known_hosts=None,
        )
    except (asyncssh.ConfigParseError, ValueError) as exc:
        raise InventoryError(f"node {node.name!r}: ssh config {config_path}: {exc}") from None
    config = options.config
    config_keys = config.get("IdentityFile") or ()
    if node.identity_file is not None:
        identities: tuple[Path, ...] = (node.identity_file,)
    elif config_keys:
        identities = tuple(Path(str(key)).expanduser() for key in config_keys)
    elif cluster.identity_file is not None:
        identities = (cluster.identity_file,)
    else:
        identities = ()
    return SSHTarget(
        node=node.name,
        alias=node.host,
        hostname=options.host,
        port=node.port or int(config.get("Port") or DEFAULT_SSH_PORT),
        username=node.user or str(config.get("User") or cluster.user or getpass.getuser()),
        identity_files=identities,
        known_hosts=cluster.known_hosts or default_known_hosts(),
        ssh_config=config_path,
        host_key_alias=options.host_key_alias,
    )
