"""Who may speak as what: the coordinator and peer credentials derived from the cluster secret, and session keys.

Two roles authenticate on a connection, each with its own key (HMAC-SHA256 with a distinct label)::

    peer key              K_peer     = HMAC(S, "litesrl/2/peer")          shared by every node (data links)
    coordinator key of N  K_coord(N) = HMAC(S, "litesrl/2/coordinator|" + N)   one per node name N

``S`` is the cluster secret, held by the ground station (console, ``litesrl train``, the local cluster).
A board needs only its *node credential* (``name``, ``K_peer``, ``K_coord(name)``, see
:func:`node_credential_text`): with it the node proves itself to peers and checks that a coordinator knows
``K_coord(name)``, but it cannot derive another board's coordinator key nor ``S``, so a stolen or
compromised board cannot take control of the others (it can still send data as a peer, which the
plan checks bound). A process given ``S`` itself (the local emulated cluster, where everything runs under
one user) derives both keys.

After the handshake both sides derive per-connection session keys with HKDF-SHA256 (RFC 5869) from the
role key, salted with both nonces and bound to the role, the server's name and the protection mode, so
the keys of one connection are worthless on any other.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from nodes.errors import AuthError, NodeError

CREDENTIAL_TAG = "litesrl-node-credential/2"
"""First word of a node credential file (a cluster secret file holds just the secret)."""
_LABEL = b"litesrl/2/"
ROLES = ("coordinator", "peer")
"""``coordinator``: may attach, assign, shut down and read parameters; ``peer``: data and pings only."""


def role_key(secret: bytes, role: str, node: str) -> bytes:
    """The key of ``role`` towards node ``node`` derived from the cluster ``secret``."""
    if role == "peer":
        return hmac.new(secret, _LABEL + b"peer", hashlib.sha256).digest()
    return hmac.new(secret, _LABEL + b"coordinator|" + node.encode("utf-8"), hashlib.sha256).digest()


@dataclass(frozen=True)
class Credentials:
    """What one process can prove: the cluster secret (any role, towards any node), or a node credential."""

    node: str | None
    """The node a node credential belongs to; None when this holds the cluster secret."""
    peer: bytes = field(repr=False)
    """The peer key."""
    coordinator: bytes | None = field(default=None, repr=False)
    """This node's coordinator key (node credential only)."""
    secret: bytes | None = field(default=None, repr=False)
    """The cluster secret (ground station and local cluster only)."""

    @classmethod
    def parse(cls, raw: bytes) -> Credentials:
        """Credentials from the content of a secret file: a node credential line, or the cluster secret."""
        text = raw.decode("utf-8", errors="replace").strip()
        if not text.startswith(CREDENTIAL_TAG):
            return cls(node=None, peer=role_key(raw, "peer", ""), secret=raw)
        fields = dict(part.partition("=")[::2] for part in text.split()[1:])
        try:
            return cls(node=fields["name"], peer=bytes.fromhex(fields["peer"]),
                       coordinator=bytes.fromhex(fields["coordinator"]))
        except (KeyError, ValueError):
            raise NodeError(f"malformed node credential: expected '{CREDENTIAL_TAG} name=N peer=HEX coordinator=HEX'") from None

    def key(self, role: str, node: str) -> bytes:
        """The key of ``role`` towards ``node``; AuthError when these credentials cannot speak for it."""
        if role not in ROLES:
            raise AuthError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
        if role == "peer":
            return self.peer
        if self.secret is not None:
            return role_key(self.secret, role, node)
        if node == self.node and self.coordinator is not None:
            return self.coordinator
        raise AuthError(f"the node credential of {self.node} cannot act as the coordinator of {node}")


def as_credentials(secret: bytes | Credentials) -> Credentials:
    """``secret`` as :class:`Credentials` (raw bytes are a secret file's content)."""
    return secret if isinstance(secret, Credentials) else Credentials.parse(secret)


def node_credential_text(secret: bytes, node: str) -> str:
    """The one-line credential file for board ``node`` (what ``litesrl nodes start`` copies, never ``S``)."""
    if not node or any(c.isspace() for c in node):
        raise NodeError(f"node name {node!r} cannot carry a credential (empty or with spaces)")
    return (f"{CREDENTIAL_TAG} name={node} peer={role_key(secret, 'peer', node).hex()} "
            f"coordinator={role_key(secret, 'coordinator', node).hex()}")


def hkdf(key: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract with ``salt``, expand to ``length`` bytes bound to ``info``."""
    prk = hmac.new(salt, key, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


@dataclass(frozen=True)
class SessionKeys:
    """One connection's keys: a MAC key and a cipher key for each direction."""

    mode: str
    """``integrity`` (a MAC on every frame) or ``encrypt`` (ChaCha20-Poly1305 on every frame)."""
    mac: str
    """The per-frame MAC of ``integrity`` mode (``poly1305`` or ``hmac-sha256``)."""
    client_to_server: bytes = field(repr=False)
    server_to_client: bytes = field(repr=False)

    @classmethod
    def derive(cls, key: bytes, transcript: bytes, client_nonce: bytes, server_nonce: bytes, mode: str,
               mac: str) -> SessionKeys:
        """Keys bound to the handshake ``transcript`` (role, server name, mode, MAC) and both nonces."""
        okm = hkdf(key, client_nonce + server_nonce, _LABEL + b"session|" + transcript, 64)
        return cls(mode, mac, okm[:32], okm[32:])
