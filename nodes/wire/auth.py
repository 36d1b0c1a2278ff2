"""Cluster shared secret and the mutual HMAC-SHA256 challenge-response run at the start of every connection.

Handshake (each side draws a fresh 32-byte nonce from :mod:`secrets`; ``K`` is the key of the role the
client claims towards the server's name, see :mod:`nodes.wire.keys`)::

    client -> server  HELLO          {"nonce": Nc, "role": coordinator|peer, "protect": integrity|encrypt,
                                      "macs": the per-frame MACs the client can compute}
    server -> client  AUTH_CHALLENGE {"nonce": Ns, "name": server's node name, "protect": mode, "mac": chosen}
    client -> server  AUTH_RESPONSE  {"proof": HMAC-SHA256(K, "litesrl/2/client|" + T + Nc + Ns)}
    server -> client  AUTH_OK        {"proof": HMAC-SHA256(K, "litesrl/2/server|" + T + Nc + Ns)}
    T = role | name | mode | mac

Only nonces and HMACs cross the wire, never a key. The side label stops a peer from reflecting one side's
proof back as the other's, fresh nonces on both sides stop replays, and the transcript ``T`` binds the
server's identity and the protection mode: a relay cannot point a coordinator at another node (the client
checks the name it expects, and the key depends on it) nor downgrade encryption (the mode is the stronger
of both wishes, and both proofs cover it). The server speaks its proof only after the client has proved
itself, so an unauthenticated peer cannot use the server as an oracle. Proofs are compared in constant
time (:func:`hmac.compare_digest`), and handshake frames are read under :data:`HANDSHAKE_LIMITS`, so a
stranger cannot make a node allocate a tensor buffer. Every later frame carries a sequence number and a
MAC under session keys derived from the handshake (:mod:`nodes.wire.guard`).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from engine.io import atomic_write
from nodes.errors import AuthError, NodeError
from nodes.wire.frame import PROTOCOL_VERSION, FrameLimits, MessageType
from nodes.wire.guard import MODES, available_macs
from nodes.wire.keys import ROLES, Credentials, SessionKeys, as_credentials

if TYPE_CHECKING:
    from nodes.wire.transport import Connection, Message

log = logging.getLogger(__name__)

SECRET_ENV = "LITESRL_SECRET"
MIN_SECRET_CHARS = 16
NONCE_BYTES = 32
_LABEL = f"litesrl/{PROTOCOL_VERSION}/".encode()
HANDSHAKE_LIMITS = FrameLimits(max_header_bytes=4096, max_payload_bytes=0)
"""Handshake frames carry a nonce or a proof and no tensors, so a peer not yet authenticated cannot
make the other side allocate more than a few kilobytes."""


def default_secret_path() -> Path:
    """Where the cluster secret lives when no path is given: ``$XDG_CONFIG_HOME/litesrl/cluster.secret``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "litesrl" / "cluster.secret"


def generate_secret() -> str:
    """A new random cluster secret: 64 hex characters (256 bits)."""
    return secrets.token_hex(32)


def write_secret(path: str | os.PathLike, secret: str | None = None) -> str:
    """Write ``secret`` (a new one if None) to ``path`` atomically with mode 0600 and return it."""
    secret = generate_secret() if secret is None else secret
    _check_secret(secret, f"the secret for {path}")
    # atomic_write's temporary file comes from mkstemp, which creates it 0600, so the secret is never
    # readable by others, not even for the instant before the rename.
    target = atomic_write(path, lambda handle: handle.write((secret + "\n").encode("utf-8")))
    os.chmod(target, 0o600)
    return secret


def load_secret(path: str | os.PathLike | None = None) -> bytes:
    """The cluster secret: from ``path`` if given, else ``$LITESRL_SECRET``, else :func:`default_secret_path`.

    A secret file must not be readable by group or others (like ssh's private keys); raises
    :class:`NodeError` if no secret is found, the file is too open, or the secret is too short.
    """
    if path is None and os.environ.get(SECRET_ENV):
        secret = os.environ[SECRET_ENV].strip()
        _check_secret(secret, f"${SECRET_ENV}")
        return secret.encode("utf-8")
    file = Path(path) if path is not None else default_secret_path()
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NodeError(
            f"no cluster secret: {file} does not exist and ${SECRET_ENV} is not set "
            "(create one with nodes.wire.auth.write_secret)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeError(f"cannot read the cluster secret {file}: {exc}") from None
    if mode & 0o077:
        raise NodeError(f"cluster secret {file} is accessible by other users (mode {mode & 0o777:o}); run chmod 600 on it")
    secret = text.strip()
    _check_secret(secret, str(file))
    return secret.encode("utf-8")


MAX_NAME_CHARS = 128


def client_proof(key: bytes, transcript: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The HMAC by which the client proves it holds the key of the role it claims."""
    return hmac.new(key, _LABEL + b"client|" + transcript + client_nonce + server_nonce, hashlib.sha256).digest()


def server_proof(key: bytes, transcript: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The HMAC by which the server proves it holds the same key."""
    return hmac.new(key, _LABEL + b"server|" + transcript + client_nonce + server_nonce, hashlib.sha256).digest()


def transcript(role: str, name: str, mode: str, mac: str = "hmac-sha256") -> bytes:
    """What both proofs and the session keys are bound to: the client's role, the server's name, the
    protection mode and the MAC."""
    return f"{role}|{name}|{mode}|{mac}|".encode()


async def authenticate_client(conn: Connection, secret: bytes | Credentials, *, role: str = "peer",
                              expect: str | None = None, protect: str = "integrity") -> None:
    """Run the client side of the handshake on a fresh connection as ``role``; raise :class:`AuthError` on
    failure, including a server whose name is not ``expect`` (when given) or that offers weaker protection."""
    creds = as_credentials(secret)
    client_nonce = secrets.token_bytes(NONCE_BYTES)
    macs = available_macs()
    await conn.send(MessageType.HELLO, {"nonce": client_nonce.hex(), "role": role, "protect": protect, "macs": list(macs)})
    challenge = await conn.recv(limits=HANDSHAKE_LIMITS)
    _refuse_on_error(challenge, "during the challenge")
    server_nonce = _expect_hex(challenge, MessageType.AUTH_CHALLENGE, "nonce", NONCE_BYTES)
    name, mode, mac = _name(challenge), challenge.header.get("protect"), challenge.header.get("mac")
    if expect is not None and name != expect:
        raise AuthError(f"{conn.peer} is node {name!r}, not {expect!r}")
    if mode not in MODES or MODES.index(mode) < MODES.index(protect):
        raise AuthError(f"{conn.peer} offered protection {mode!r:.20}, weaker than the {protect} asked for")
    if mac not in macs:
        raise AuthError(f"{conn.peer} chose the MAC {mac!r:.20}, not one of {', '.join(macs)}")
    key, told = creds.key(role, name), transcript(role, name, mode, mac)
    await conn.send(MessageType.AUTH_RESPONSE, {"proof": client_proof(key, told, client_nonce, server_nonce).hex()})
    answer = await conn.recv(limits=HANDSHAKE_LIMITS)
    _refuse_on_error(answer, "our proof")
    proof = _expect_hex(answer, MessageType.AUTH_OK, "proof", hashlib.sha256().digest_size)
    if not hmac.compare_digest(proof, server_proof(key, told, client_nonce, server_nonce)):
        raise AuthError(f"server {conn.peer} failed to prove it holds the {role} key of {name}")
    conn.protect(SessionKeys.derive(key, told, client_nonce, server_nonce, mode, mac), client=True)
    conn.peer_name = name


async def authenticate_server(conn: Connection, secret: bytes | Credentials, name: str, *,
                              protect: str = "integrity") -> None:
    """Run the server side of the handshake for node ``name`` on an accepted connection; raise
    :class:`AuthError` on failure. Sets ``conn.role`` to the role the client proved."""
    creds = as_credentials(secret)
    hello = await conn.recv(limits=HANDSHAKE_LIMITS)
    client_nonce = _expect_hex(hello, MessageType.HELLO, "nonce", NONCE_BYTES)
    role, wanted, offered = hello.header.get("role"), hello.header.get("protect"), hello.header.get("macs")
    if role not in ROLES or wanted not in MODES or not isinstance(offered, list):
        raise AuthError(f"HELLO needs 'role' in {ROLES}, 'protect' in {MODES} and a list of 'macs'")
    mode = MODES[max(MODES.index(wanted), MODES.index(protect))]
    mac = next((m for m in available_macs() if m in offered), None)
    if mac is None:
        raise AuthError(f"no common MAC: the client offers {offered!r:.60}, this node has {', '.join(available_macs())}")
    key, told = creds.key(role, name), transcript(role, name, mode, mac)
    server_nonce = secrets.token_bytes(NONCE_BYTES)
    await conn.send(MessageType.AUTH_CHALLENGE, {"nonce": server_nonce.hex(), "name": name, "protect": mode, "mac": mac})
    response = await conn.recv(limits=HANDSHAKE_LIMITS)
    proof = _expect_hex(response, MessageType.AUTH_RESPONSE, "proof", hashlib.sha256().digest_size)
    if not hmac.compare_digest(proof, client_proof(key, told, client_nonce, server_nonce)):
        raise AuthError(f"client {conn.peer} failed to prove it holds the {role} key of {name}")
    await conn.send(MessageType.AUTH_OK, {"proof": server_proof(key, told, client_nonce, server_nonce).hex()})
    conn.protect(SessionKeys.derive(key, told, client_nonce, server_nonce, mode, mac), client=False)
    conn.role = role
    log.debug("authenticated %s %s (%s, %s)", role, conn.peer, mode, mac)


def _name(message: Message) -> str:
    name = message.header.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_CHARS:
        raise AuthError(f"AUTH_CHALLENGE needs the server's 'name' (1 to {MAX_NAME_CHARS} characters)")
    return name


def _check_secret(secret: str, source: str) -> None:
    if len(secret) < MIN_SECRET_CHARS:
        raise NodeError(f"{source} holds a cluster secret of {len(secret)} characters; at least {MIN_SECRET_CHARS} are required")


def _refuse_on_error(message: Message, stage: str) -> None:
    if message.type is MessageType.ERROR:
        raise AuthError(f"server refused {stage}: {message.header.get('reason', 'no reason given')}")


def _expect_hex(message: Message, msg_type: MessageType, key: str, size: int) -> bytes:
    """The ``size``-byte value hex-encoded under ``key`` of a message that must be of ``msg_type``."""
    if message.type is not msg_type:
        raise AuthError(f"expected {msg_type.name} during the handshake, got {message.type.name}")
    value = message.header.get(key)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise AuthError(f"{msg_type.name} needs '{key}' as {size * 2} hex characters")
    return raw
