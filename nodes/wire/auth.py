"""Cluster shared secret and the mutual HMAC-SHA256 challenge-response run at the start of every connection.

Handshake (each side draws a fresh 32-byte nonce from :mod:`secrets`)::

    client -> server  HELLO          {"nonce": Nc}
    server -> client  AUTH_CHALLENGE {"nonce": Ns}
    client -> server  AUTH_RESPONSE  {"proof": HMAC-SHA256(secret, b"litesrl/1/client|" + Nc + Ns)}
    server -> client  AUTH_OK        {"proof": HMAC-SHA256(secret, b"litesrl/1/server|" + Nc + Ns)}

Only nonces and HMACs cross the wire, never the secret. The role label stops a peer from reflecting one
side's proof back as the other's, and fresh nonces on both sides stop replays. The server speaks its proof
only after the client has proved itself, so an unauthenticated peer cannot use the server as an oracle.
Proofs are compared in constant time (:func:`hmac.compare_digest`), and handshake frames are read under
:data:`HANDSHAKE_LIMITS`, so a stranger cannot make a node allocate a tensor buffer.
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


def client_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The HMAC by which the client proves it knows ``secret``."""
    return hmac.new(secret, _LABEL + b"client|" + client_nonce + server_nonce, hashlib.sha256).digest()


def server_proof(secret: bytes, client_nonce: bytes, server_nonce: bytes) -> bytes:
    """The HMAC by which the server proves it knows ``secret``."""
    return hmac.new(secret, _LABEL + b"server|" + client_nonce + server_nonce, hashlib.sha256).digest()


async def authenticate_client(conn: Connection, secret: bytes) -> None:
    """Run the client side of the handshake on a fresh connection; raise :class:`AuthError` on failure."""
    client_nonce = secrets.token_bytes(NONCE_BYTES)
    await conn.send(MessageType.HELLO, {"nonce": client_nonce.hex()})
    challenge = await conn.recv(limits=HANDSHAKE_LIMITS)
    _refuse_on_error(challenge, "during the challenge")
    server_nonce = _expect_hex(challenge, MessageType.AUTH_CHALLENGE, "nonce", NONCE_BYTES)
    await conn.send(MessageType.AUTH_RESPONSE, {"proof": client_proof(secret, client_nonce, server_nonce).hex()})
    answer = await conn.recv(limits=HANDSHAKE_LIMITS)
    _refuse_on_error(answer, "our proof")
    proof = _expect_hex(answer, MessageType.AUTH_OK, "proof", hashlib.sha256().digest_size)
    if not hmac.compare_digest(proof, server_proof(secret, client_nonce, server_nonce)):
        raise AuthError(f"server {conn.peer} failed to prove it knows the cluster secret")


async def authenticate_server(conn: Connection, secret: bytes) -> None:
    """Run the server side of the handshake on an accepted connection; raise :class:`AuthError` on failure."""
    hello = await conn.recv(limits=HANDSHAKE_LIMITS)
    client_nonce = _expect_hex(hello, MessageType.HELLO, "nonce", NONCE_BYTES)
    server_nonce = secrets.token_bytes(NONCE_BYTES)
    await conn.send(MessageType.AUTH_CHALLENGE, {"nonce": server_nonce.hex()})
    response = await conn.recv(limits=HANDSHAKE_LIMITS)
    proof = _expect_hex(response, MessageType.AUTH_RESPONSE, "proof", hashlib.sha256().digest_size)
    if not hmac.compare_digest(proof, client_proof(secret, client_nonce, server_nonce)):
        raise AuthError(f"client {conn.peer} failed to prove it knows the cluster secret")
    await conn.send(MessageType.AUTH_OK, {"proof": server_proof(secret, client_nonce, server_nonce).hex()})
    log.debug("authenticated client %s", conn.peer)


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
