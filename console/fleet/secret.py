"""The cluster secret on the ground station: where it is, and creating it (0600, atomically) when asked or on first start.

The agents authenticate every link with it (``nodes.wire.auth``); ``start`` copies it to each node.
Where it is: the inventory's ``[cluster] secret_file``, else ``$LITESRL_SECRET`` (the secret itself),
else ``$XDG_CONFIG_HOME/litesrl/cluster.secret``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from console.errors import FleetError
from console.fleet.inventory import ClusterSpec
from nodes.errors import NodeError
from nodes.wire.auth import SECRET_ENV, default_secret_path, load_secret, write_secret


@dataclass(frozen=True)
class SecretState:
    """The cluster secret and where it came from."""

    secret: bytes
    """The secret."""
    source: str
    """The file it is in, or ``$LITESRL_SECRET``."""
    created: bool
    """True when this call wrote a new secret file."""


def secret_file(cluster: ClusterSpec) -> Path | None:
    """The secret file this cluster uses, or None when ``$LITESRL_SECRET`` holds the secret itself."""
    if cluster.secret_file is not None:
        return cluster.secret_file
    return None if os.environ.get(SECRET_ENV) else default_secret_path()


def cluster_secret(cluster: ClusterSpec, *, create: bool = False, replace: bool = False) -> SecretState:
    """The cluster's secret; with ``create`` a missing file is made (``replace``: a new one even if present).

    Raises :class:`FleetError` (one line) when there is none and ``create`` is false, or it is unusable.
    """
    path = secret_file(cluster)
    if path is None:
        if replace:
            raise FleetError(f"${SECRET_ENV} holds the secret; unset it to keep one in a file")
        return SecretState(_load(None), f"${SECRET_ENV}", False)
    if replace or (create and not path.exists()):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_secret(path)
        return SecretState(_load(path), str(path), True)
    if not path.exists():
        raise FleetError(f"no cluster secret at {path}: create one with `litesrl nodes secret` "
                         "(`litesrl nodes start` also creates it)")
    return SecretState(_load(path), str(path), False)


def _load(path: Path | None) -> bytes:
    try:
        return load_secret(path)
    except NodeError as exc:
        raise FleetError(str(exc)) from None
