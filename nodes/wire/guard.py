"""Per-frame protection after the handshake: a sequence number and a MAC (or an AEAD) on every frame.

Each direction of a connection has its own session key and frame counter (``seq``, never sent: both
sides count). In ``integrity`` mode a frame travels as::

    prefix | header | tag_h | payload | tag_p        (tag_p only when the payload is not empty)
    tag_h = MAC(k_h, prefix | header)                 16 bytes
    tag_p = MAC(k_p, prefix | header | payload)       16 bytes
    k_h, k_p = HMAC-SHA256(k, "h" | seq), HMAC-SHA256(k, "p" | seq)    fresh keys for every frame

so the header is authenticated before the receiver allocates anything for the payload, and the payload
still goes out of, and comes into, the tensors' own memory (the MAC reads the same buffers). An altered,
injected, dropped, replayed or reordered frame fails its tag (the keys depend on ``seq``), and the
receiver drops the connection.

The MAC is negotiated in the handshake (:func:`available_macs`): Poly1305 (from the ``cryptography``
package; a one-time authenticator, safe here because every key is used once) when both sides have it,
else HMAC-SHA256 truncated to 16 bytes, from the standard library alone, so a Jetson with only python,
torch, numpy and pillow runs the agent. Measured on one core of the test machine (BENCHMARKS.md):
Poly1305 4.7 GB/s, HMAC-SHA256 1.4 GB/s (SHA-NI; Cortex-A78AE has the ARMv8 SHA-256 instructions too),
keyed BLAKE2b 0.45 GB/s. The transport hashes a payload in the time it would otherwise spend waiting on
the socket (a full send buffer, an empty receive buffer, the emulated link's schedule), so on a link
slower than the CPU the MAC adds almost nothing (``benchmarks/transport.py``). In ``encrypt`` mode
(untrusted links; needs ``cryptography``) the header and each payload chunk of up to :data:`CHUNK_BYTES`
are sealed with ChaCha20-Poly1305 (fast without AES hardware), nonce = chunk index | seq, the prefix as
associated data.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nodes.errors import NodeError, ProtocolError

MACS = ("poly1305", "hmac-sha256")
"""Per-frame MACs, preferred first."""
MODES = ("integrity", "encrypt")
"""Protection modes, weakest first; a connection runs the stronger of what the two sides ask."""
TAG_BYTES = 16
CHUNK_BYTES = 4 * 1024 * 1024
"""Payload unit of encryption (each chunk carries its own tag, sealed in the worker thread)."""

_pool: ThreadPoolExecutor | None = None


class IntegrityError(ProtocolError):
    """A frame failed its MAC: altered, injected, replayed or reordered on the way."""


def available_macs() -> tuple[str, ...]:
    """The MACs this process can compute: HMAC-SHA256 always, Poly1305 when ``cryptography`` is installed."""
    try:
        from cryptography.hazmat.primitives.poly1305 import Poly1305  # noqa: F401
    except ImportError:
        return ("hmac-sha256",)
    return MACS


def offload(work: Callable[[Any], Any], piece: memoryview) -> asyncio.Future:
    """Run ``work(piece)`` in the MAC thread (one thread keeps a frame's updates in order)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="litesrl-mac")
    return asyncio.get_running_loop().run_in_executor(_pool, work, piece)


class Guard:
    """One direction of a protected connection: hands out a :class:`MacFrame` or :class:`SealedFrame` per frame."""

    def __init__(self, mode: str, key: bytes, mac: str = "hmac-sha256") -> None:
        if mode not in MODES:
            raise ProtocolError(f"unknown protection mode {mode!r}; expected one of {', '.join(MODES)}")
        if mac not in MACS:
            raise ProtocolError(f"unknown MAC {mac!r}; expected one of {', '.join(MACS)}")
        self.mode = mode
        self.mac = mac
        self._key = key
        self._seq = 0
        self._aead = _cipher(key) if mode == "encrypt" else None

    @property
    def in_place(self) -> bool:
        """Whether payload bytes travel as they lie in memory (integrity) or as ciphertext (encrypt)."""
        return self._aead is None

    def frame(self, prefix: bytes) -> MacFrame | SealedFrame:
        """The protection of the next frame, whose ``prefix`` has been built or read."""
        seq, self._seq = self._seq, self._seq + 1
        if self._aead is None:
            return MacFrame(self._key, seq, prefix, self.mac)
        return SealedFrame(self._aead, seq, prefix)


class MacFrame:
    """The two tags of one frame, fed in wire order by the sender or the receiver."""

    in_place = True

    def __init__(self, key: bytes, seq: int, prefix: bytes, mac: str = "hmac-sha256") -> None:
        self.seq = seq
        number = seq.to_bytes(8, "big")
        self._header = _tagger(mac, hmac.digest(key, b"h" + number, "sha256"))
        self._payload = _tagger(mac, hmac.digest(key, b"p" + number, "sha256"))
        self._header.update(prefix)
        self._payload.update(prefix)

    def seal_header(self, body: bytes) -> bytes:
        """What goes on the wire for the header: the body, then its tag."""
        self._header.update(body)
        self._payload.update(body)
        return body + self._header.tag()

    def open_header(self, wire: memoryview) -> memoryview:
        """The header body of ``wire`` (body + tag) once its tag checks out; IntegrityError otherwise."""
        body = wire[:-TAG_BYTES]
        self._header.update(body)
        self._payload.update(body)
        self._check(wire[-TAG_BYTES:], self._header.tag(), "header")
        return body

    def chunk(self, piece: memoryview) -> memoryview:
        """Account for ``piece`` of the payload (sent or received as it is)."""
        self._payload.update(piece)
        return piece

    def trailer(self) -> bytes:
        """The payload tag the sender appends."""
        return self._payload.tag()

    def check_trailer(self, tag: memoryview) -> None:
        """Raise IntegrityError unless ``tag`` is the payload tag of what was received."""
        self._check(tag, self._payload.tag(), "payload")

    def _check(self, got: memoryview, want: bytes, part: str) -> None:
        if not hmac.compare_digest(bytes(got), want):
            raise IntegrityError(f"frame {self.seq} failed its integrity check ({part}): "
                                 "altered, injected, replayed or reordered")


class _Hmac:
    """HMAC-SHA256 truncated to :data:`TAG_BYTES` (standard library only)."""

    def __init__(self, key: bytes) -> None:
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    def update(self, data: bytes | memoryview) -> None:
        self._mac.update(data)

    def tag(self) -> bytes:
        return self._mac.digest()[:TAG_BYTES]


class _Poly1305:
    """Poly1305 under a key used for this one message only."""

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.poly1305 import Poly1305

        self._mac = Poly1305(key)

    def update(self, data: bytes | memoryview) -> None:
        self._mac.update(data)

    def tag(self) -> bytes:
        return self._mac.finalize()


def _tagger(mac: str, key: bytes) -> _Hmac | _Poly1305:
    return _Poly1305(key) if mac == "poly1305" else _Hmac(key)


class SealedFrame:
    """ChaCha20-Poly1305 over one frame: the header and each payload chunk sealed on their own."""

    in_place = False

    def __init__(self, aead: Any, seq: int, prefix: bytes) -> None:
        self.seq = seq
        self._aead = aead
        self._aad = prefix
        self._index = 0

    def _nonce(self) -> bytes:
        nonce = self._index.to_bytes(4, "big") + self.seq.to_bytes(8, "big")
        self._index += 1
        return nonce

    def seal_header(self, body: bytes) -> bytes:
        return self._aead.encrypt(self._nonce(), body, self._aad)

    def open_header(self, wire: memoryview) -> bytes:
        return self._open(wire, "header")

    def chunk(self, piece: memoryview) -> bytes:
        """The ciphertext and tag of one payload chunk."""
        return self._aead.encrypt(self._nonce(), piece, self._aad)

    def open_chunk(self, wire: memoryview) -> bytes:
        """The plaintext of one received chunk (ciphertext + tag); IntegrityError when it was tampered with."""
        return self._open(wire, "payload")

    def _open(self, wire: memoryview, part: str) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(self._nonce(), bytes(wire), self._aad)
        except InvalidTag:
            raise IntegrityError(f"frame {self.seq} failed its integrity check ({part}): "
                                 "altered, injected, replayed or reordered") from None


def _cipher(key: bytes) -> Any:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    except ImportError:
        raise NodeError("encrypted links need the 'cryptography' package (pip install cryptography); "
                        "integrity protection works without it") from None
    return ChaCha20Poly1305(key)
