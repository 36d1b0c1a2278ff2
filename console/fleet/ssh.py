"""One verified, keepalive-watched asyncssh connection to a node, and the state it is in.

Host keys are always checked against known_hosts (never auto-accepted); authentication uses keys
and ssh-agent only, as litesrl stores no passwords.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncssh

from console.errors import FleetError
from console.fleet.hostkeys import KnownHostsCheck, fingerprint, mismatch_message, unknown_message
from console.fleet.inventory import ClusterSpec, InventoryNode
from console.fleet.remote import RemoteLayout, sftp_path
from console.fleet.target import SSHTarget, resolve_target

log = logging.getLogger(__name__)

KEEPALIVE_COUNT_MAX = 3
"""Unanswered keepalives after which asyncssh drops the connection (the node then shows as stale)."""


class LinkState(str, enum.Enum):
    """What the console knows about its SSH link to a node."""

    UP = "up"
    AUTH_FAILED = "auth failed"
    HOST_KEY_UNKNOWN = "host key unknown"
    HOST_KEY_MISMATCH = "host key mismatch"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    STALE = "stale"


@dataclass(frozen=True)
class NodeStatus:
    """The state of one node's SSH link and, when it is not up, why."""

    node: str
    """Inventory name."""
    state: LinkState
    """Link state."""
    reason: str = ""
    """One line explaining a state other than up (what failed and what to do)."""

    @property
    def ok(self) -> bool:
        """True when the link is up."""
        return self.state is LinkState.UP


class NodeUnavailable(FleetError):
    """A node whose SSH link is not up; :attr:`status` says which state and why."""

    def __init__(self, status: NodeStatus):
        super().__init__(f"{status.node}: {status.state.value}: {status.reason}")
        self.status = status


class CommandFailed(FleetError):
    """A remote command that exited non-zero; carries its exit status and the line that explains it."""

    def __init__(self, node: str, command: str, exit_status: int, detail: str):
        super().__init__(f"{node}: command failed (exit {exit_status}): {_short(command)}: {detail}")
        self.exit_status = exit_status
        self.detail = detail


@dataclass(frozen=True)
class CommandResult:
    """What a remote command returned."""

    exit_status: int
    """Exit status (-1 when it died from a signal)."""
    stdout: str
    """Everything it wrote to stdout."""
    stderr: str
    """Everything it wrote to stderr."""


class _Client(asyncssh.SSHClient):
    """Remembers the host key a node offered and why its connection ended."""

    def __init__(self) -> None:
        self.offered_key: asyncssh.SSHKey | None = None
        self.lost_reason: str | None = None
        self.closing = False

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        # Called only for a key that known_hosts does not list; we refuse it, keeping it for the message.
        self.offered_key = key
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.lost_reason = str(exc) if exc else "the node closed the connection"


class NodeConnection:
    """An authenticated SSH connection to one node."""

    def __init__(self, node: InventoryNode, target: SSHTarget, conn: asyncssh.SSHClientConnection, client: _Client):
        self.node = node
        self.target = target
        self.layout = RemoteLayout.for_node(node)
        self._conn = conn
        self._client = client

    @property
    def status(self) -> NodeStatus:
        """Up, or stale once the connection was lost (keepalive timeout, node reboot, network cut)."""
        if self._client.lost_reason is not None:
            return NodeStatus(self.node.name, LinkState.STALE, f"connection lost: {self._client.lost_reason}")
        return NodeStatus(self.node.name, LinkState.UP)

    @property
    def ssh(self) -> asyncssh.SSHClientConnection:
        """The asyncssh connection, for port forwarding and processes; raises :class:`NodeUnavailable` when stale."""
        status = self.status
        if not status.ok:
            raise NodeUnavailable(status)
        return self._conn

    async def run(self, command: str, *, input: str | None = None, timeout: float = 60.0,
                  check: bool = True) -> CommandResult:
        """Run ``command`` through the node's login shell and return its output.

        With ``check``, a non-zero exit raises :class:`CommandFailed` carrying the last stderr line.
        Raises :class:`FleetError` after ``timeout`` seconds and :class:`NodeUnavailable` when stale.
        """
        log.debug("%s: running %s", self.node.name, command)
        try:
            done = await asyncio.wait_for(self.ssh.run(command, input=input, check=False), timeout)
        except asyncio.TimeoutError:
            raise FleetError(f"{self.node.name}: command timed out after {timeout:g}s: {_short(command)}") from None
        except (asyncssh.Error, OSError) as exc:
            raise self._lost_or(exc) from None
        exit_status = done.exit_status if done.exit_status is not None else -1
        result = CommandResult(exit_status, _text(done.stdout), _text(done.stderr))
        if check and exit_status != 0:
            detail = _last_line(result.stderr) or _last_line(result.stdout) or "no output"
            raise CommandFailed(self.node.name, command, exit_status, detail)
        return result

    async def upload(self, local: Path, remote: str,
                     progress: Callable[[int, int], None] | None = None) -> None:
        """Copy ``local`` to ``remote`` over SFTP, calling ``progress(bytes_sent, total)`` as it goes."""

        def handler(_src: bytes, _dst: bytes, sent: int, total: int) -> None:
            if progress is not None:
                progress(sent, total)

        try:
            async with self.ssh.start_sftp_client() as sftp:
                await sftp.put(str(local), sftp_path(remote), progress_handler=handler)
        except (asyncssh.Error, OSError) as exc:
            raise self._lost_or(exc, f"upload of {local.name} to {remote} failed") from None

    async def close(self) -> None:
        """Close the connection (not reported as stale)."""
        self._client.closing = True
        self._conn.close()
        await self._conn.wait_closed()

    def _lost_or(self, exc: BaseException, what: str = "SSH error") -> FleetError:
        status = self.status
        if not status.ok:
            return NodeUnavailable(status)
        return FleetError(f"{self.node.name}: {what}: {exc}")


async def open_ssh(node: InventoryNode, cluster: ClusterSpec) -> NodeConnection:
    """Open and authenticate an SSH connection to ``node``, verifying its host key.

    Raises :class:`NodeUnavailable` with the state (auth failed, host key unknown or mismatched,
    timeout, unreachable) and a reason that says what to do.
    """
    target = resolve_target(node, cluster)
    for identity in target.identity_files:
        if not identity.is_file():
            _unavailable(node, LinkState.AUTH_FAILED, f"identity file {identity} does not exist")
    check = KnownHostsCheck(target.known_hosts)
    client = _Client()
    try:
        conn = await asyncssh.connect(
            target.alias,
            target.port,
            config=[str(target.ssh_config)] if target.ssh_config else None,
            username=target.username,
            client_keys=[str(p) for p in target.identity_files] or (),
            known_hosts=check,
            client_factory=lambda: client,
            # Encrypted key files are skipped rather than fatal: ssh-agent may hold them unlocked.
            ignore_encrypted=True,
            password_auth=False,
            kbdint_auth=False,
            connect_timeout=cluster.connect_timeout,
            keepalive_interval=cluster.keepalive_interval,
            keepalive_count_max=KEEPALIVE_COUNT_MAX,
        )
    except asyncssh.HostKeyNotVerifiable:
        if check.recorded:
            _unavailable(node, LinkState.HOST_KEY_MISMATCH, mismatch_message(target, client.offered_key, check.recorded))
        _unavailable(node, LinkState.HOST_KEY_UNKNOWN, unknown_message(target, client.offered_key))
    except asyncssh.PermissionDenied:
        keys = ", ".join(str(p) for p in target.identity_files) or "ssh-agent and ~/.ssh/id_* keys"
        _unavailable(node, LinkState.AUTH_FAILED, f"{target.address} refused {keys} (litesrl uses keys only, "
                     "no passwords; a key with a passphrase must be loaded into ssh-agent with ssh-add)")
    except asyncssh.KeyImportError as exc:
        keys = ", ".join(str(p) for p in target.identity_files) or "the default keys"
        _unavailable(node, LinkState.AUTH_FAILED, f"cannot load {keys}: {exc}")
    except asyncio.TimeoutError:
        _unavailable(node, LinkState.TIMEOUT, f"no SSH answer from {target.hostname}:{target.port} "
                                              f"within {cluster.connect_timeout:g}s")
    except ConnectionRefusedError:
        _unavailable(node, LinkState.UNREACHABLE, f"{target.hostname}:{target.port} refused the connection (is sshd running?)")
    except socket.gaierror as exc:
        _unavailable(node, LinkState.UNREACHABLE, f"cannot resolve {target.hostname}: {exc.strerror}")
    except (OSError, asyncssh.Error) as exc:
        _unavailable(node, LinkState.UNREACHABLE, f"{target.hostname}:{target.port}: {exc}")
    log.info("%s: connected to %s (%s)", node.name, target.address, fingerprint(conn.get_server_host_key()))
    return NodeConnection(node, target, conn, client)


def _unavailable(node: InventoryNode, state: LinkState, reason: str) -> NoReturn:
    raise NodeUnavailable(NodeStatus(node.name, state, reason))


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _short(command: str, limit: int = 80) -> str:
    text = " ".join(command.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
