"""Host key verification against known_hosts, and the trust-on-confirmation flow that extends it."""

from __future__ import annotations

import asyncio
import enum
import stat
from pathlib import Path

import asyncssh

from console.errors import FleetError
from console.fleet.target import SSHTarget
from engine.io import atomic_write_text


class KeyVerdict(str, enum.Enum):
    """How a host key offered by a node compares with known_hosts."""

    TRUSTED = "trusted"
    UNKNOWN = "unknown"
    MISMATCH = "mismatch"


def fingerprint(key: asyncssh.SSHKey) -> str:
    """The key's SHA256 fingerprint as OpenSSH prints it (``SHA256:...``)."""
    return key.get_fingerprint("sha256")


def read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    """The entries of ``path`` (none when it does not exist); raises :class:`FleetError` if it is malformed."""
    if not path.exists():
        return asyncssh.SSHKnownHosts()
    try:
        return asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError) as exc:
        raise FleetError(f"cannot read known_hosts {path}: {exc}") from None


class KnownHostsCheck:
    """The ``known_hosts`` callable given to asyncssh: answers its lookup and remembers what matched.

    After a refused key, :attr:`recorded` tells a never-seen host (unknown) from one whose recorded
    key differs (mismatch, possibly an attack). X.509 known_hosts entries are not used.
    """

    def __init__(self, path: Path):
        self.path = path
        self._known = read_known_hosts(path)
        self.recorded: list[asyncssh.SSHKey] = []

    def __call__(self, host: str, addr: str, port: int | None) -> tuple[list, list, list]:
        host_keys, ca_keys, revoked, *_ = self._known.match(host, addr, port)
        self.recorded = _unique(host_keys)
        return list(host_keys), list(ca_keys), list(revoked)


def verdict(target: SSHTarget, key: asyncssh.SSHKey) -> tuple[KeyVerdict, list[asyncssh.SSHKey]]:
    """Compare ``key`` with the entries recorded for ``target``; returns the verdict and those entries."""
    name = target.host_key_alias or target.hostname
    port = target.port if target.port != 22 else None
    recorded = _unique(read_known_hosts(target.known_hosts).match(name, "", port)[0])
    if any(k.public_data == key.public_data for k in recorded):
        return KeyVerdict.TRUSTED, recorded
    return (KeyVerdict.MISMATCH if recorded else KeyVerdict.UNKNOWN), recorded


def _unique(keys: list[asyncssh.SSHKey]) -> list[asyncssh.SSHKey]:
    # A host listed by name and by address matches twice; report each key once.
    seen: dict[bytes, asyncssh.SSHKey] = {}
    for key in keys:
        seen.setdefault(key.public_data, key)
    return list(seen.values())


def unknown_message(target: SSHTarget, offered: asyncssh.SSHKey | None) -> str:
    """One line telling the operator the host key is unknown and how to trust it."""
    offered_text = f" offers {fingerprint(offered)}, which" if offered is not None else ""
    return (
        f"host key of {target.known_hosts_name}{offered_text} is not in {target.known_hosts}; "
        f"check it and run `litesrl nodes trust {target.node}`"
    )


def mismatch_message(target: SSHTarget, offered: asyncssh.SSHKey | None, recorded: list[asyncssh.SSHKey]) -> str:
    """One line warning that the host key changed, with the commands to accept a legitimate change."""
    offered_text = fingerprint(offered) if offered is not None else "another key"
    known = ", ".join(fingerprint(k) for k in recorded)
    return (
        f"host key of {target.known_hosts_name} has CHANGED: it offers {offered_text} but "
        f"{target.known_hosts} holds {known}; this may be an attack. If the board was reinstalled, run "
        f"`ssh-keygen -R '{target.known_hosts_name}' -f {target.known_hosts}` then "
        f"`litesrl nodes trust {target.node}`"
    )


async def fetch_host_key(target: SSHTarget, timeout: float) -> asyncssh.SSHKey:
    """Connect to ``target`` without authenticating and return the host key it offers.

    Raises :class:`FleetError` when the node cannot be reached within ``timeout`` seconds.
    """
    config = [str(target.ssh_config)] if target.ssh_config else None
    try:
        key = await asyncio.wait_for(
            asyncssh.get_server_host_key(target.alias, target.port, config=config), timeout
        )
    except asyncio.TimeoutError:
        raise FleetError(f"{target.node}: no SSH answer from {target.hostname}:{target.port} within {timeout:g}s") from None
    except (OSError, asyncssh.Error) as exc:
        raise FleetError(f"{target.node}: cannot reach {target.hostname}:{target.port}: {exc}") from None
    if key is None:
        raise FleetError(f"{target.node}: {target.hostname}:{target.port} offered no host key")
    return key


def add_known_host(target: SSHTarget, key: asyncssh.SSHKey) -> str:
    """Append ``key`` for ``target`` to its known_hosts (atomically, creating the file); returns the line.

    Refuses (:class:`FleetError`) when known_hosts already holds a different key for the host:
    replacing a key is the operator's explicit decision (``ssh-keygen -R``), never a side effect.
    """
    state, recorded = verdict(target, key)
    if state is KeyVerdict.MISMATCH:
        raise FleetError(mismatch_message(target, key, recorded))
    algorithm, blob = key.export_public_key("openssh").decode("ascii").split()[:2]
    line = f"{target.known_hosts_name} {algorithm} {blob}\n"
    if state is KeyVerdict.TRUSTED:
        return line
    path = target.known_hosts
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    if existing and not existing.endswith("\n"):
        existing += "\n"
    atomic_write_text(path, existing + line)
    path.chmod(mode)  # the temporary file was created 0600; keep the file's own mode
    return line
