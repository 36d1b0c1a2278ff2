"""A framed TCP connection on asyncio: zero-copy tensor sends, in-place receives, a timeout on every wait.

This (with :mod:`nodes.wire.endpoints`, which opens connections) is the only code that touches the
sockets between nodes. A :class:`Connection` wraps one non-blocking TCP socket (``TCP_NODELAY``):
:meth:`Connection.send` hands the socket a memoryview of each contiguous CPU tensor (no ``tobytes()``,
no header+payload concatenation for large frames) and :meth:`Connection.recv` reads with ``recv_into``
straight into the memory of the tensors it returns (preallocated ones from ``into=`` when they match).
Once the handshake has set session keys (:meth:`Connection.protect`), every frame also carries its MAC
tags, or is sealed, per :mod:`nodes.wire.guard`, still without copying a payload to hash it.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from engine.deadline import within
from nodes.errors import NodeError, ProtocolError
from nodes.wire.frame import (
    PREFIX,
    FrameLimits,
    MessageType,
    TensorSpec,
    decode_header,
    decode_prefix,
    encode_header,
    encode_prefix,
    spec_for,
)
from nodes.wire.guard import (
    CHUNK_BYTES,
    TAG_BYTES,
    Guard,
    MacFrame,
    SealedFrame,
    offload,
)
from nodes.wire.shaping import LinkShape, Pacer

if TYPE_CHECKING:
    from nodes.wire.keys import SessionKeys

DEFAULT_TIMEOUT = 30.0
"""Seconds any single wait on the socket (connect, a read, a send slice) may last."""
COALESCE_BYTES = 64 * 1024
"""Frames up to this size are joined into one buffer and sent with one call (one packet on
TCP_NODELAY); larger ones go out as header, then each tensor's own memory."""
SLICE_BYTES = 4 * 1024 * 1024
"""Large buffers are handed to the socket in slices of at most this size, each under the timeout, so
the timeout bounds a stall rather than the transfer time of a 1 GiB frame; and the transfer lets the
event loop run between slices, so a big frame on a fast link never starves the node's other tasks
(heartbeats, telemetry)."""

IDLE_HASH_BYTES = 4 * 1024 * 1024
"""A sender whose socket is full hashes this much of the payload before it tries the socket again and then
waits for room (about 0.7 ms with Poly1305, 3 ms with HMAC-SHA256: the time a few MB take to drain)."""
IDLE_HASH_MIN_BYTES = 64 * 1024
"""A receiver waiting on an empty socket first hashes what has arrived, once it is at least this much."""

T = TypeVar("T")


class TransportTimeout(NodeError, TimeoutError):
    """A socket wait (connect, read or send) lasted longer than the connection's timeout."""


class ConnectionClosed(NodeError):
    """The connection could not be opened, was reset, or the peer closed it (possibly mid-frame)."""


@dataclass(frozen=True)
class Message:
    """One received frame."""

    type: MessageType
    header: dict[str, Any]
    """The sender's ``header`` dict, as JSON round-trips it."""
    tensors: tuple[torch.Tensor, ...]
    """Contiguous CPU tensors, in the order they were sent."""


class Connection:
    """One framed TCP connection. Sends are serialised with each other and receives with each other,
    so one task may send while another receives."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        limits: FrameLimits = FrameLimits(),
        shaping: LinkShape | None = None,
    ) -> None:
        """Take ownership of a connected TCP socket (made non-blocking, ``TCP_NODELAY``).

        ``timeout`` bounds every wait, ``limits`` every frame received or sent, and ``shaping`` (off by
        default) emulates a slower link on what this side sends.
        """
        check_timeout(timeout)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        """Seconds any single wait on the socket may last, unless a call passes its own."""
        self.limits = limits
        """Bounds on the frames this side receives and sends."""
        self._sock = sock
        self._closed = False
        self._pacer = Pacer(shaping) if shaping is not None else None
        host, port = sock.getpeername()[:2]
        self.peer = f"{host}:{port}"
        """``host:port`` of the other end, for messages and logs."""
        self._prefix_buf = bytearray(PREFIX.size)
        self._header_buf = bytearray(4096)
        self._send_lock = asyncio.Lock()
        self._recv_lock = asyncio.Lock()
        self._out: Guard | None = None
        self._in: Guard | None = None
        self._tag_buf = bytearray(TAG_BYTES)
        self._scratch: bytearray | None = None
        self.role: str | None = None
        """Role the peer proved in the handshake (``coordinator`` or ``peer``; set on the server side)."""
        self.peer_name: str | None = None
        """Node name the server proved in the handshake (set on the client side)."""
        self.protection: str | None = None
        """``integrity`` or ``encrypt`` once the handshake has set session keys; None before."""

    def protect(self, keys: SessionKeys, *, client: bool) -> None:
        """Protect every later frame with the handshake's session ``keys`` (see :mod:`nodes.wire.guard`)."""
        outgoing, incoming = keys.client_to_server, keys.server_to_client
        mine, theirs = (outgoing, incoming) if client else (incoming, outgoing)
        self._out, self._in = Guard(keys.mode, mine, keys.mac), Guard(keys.mode, theirs, keys.mac)
        self.protection = keys.mode

    @property
    def mac(self) -> str | None:
        """The per-frame MAC the handshake negotiated (``integrity`` mode); None otherwise."""
        return self._out.mac if self._out is not None and self._out.in_place else None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has been called."""
        return self._closed

    def peer_has_closed(self) -> bool:
        """Whether the other end has closed or reset a connection it never sends on (a peer data link).

        A send on such a connection still succeeds locally and the bytes are then lost, so a kept
        connection is probed before it is reused. Only for one-way connections: a pending byte from
        the peer also reads as "open".
        """
        if self._closed:
            return True
        try:
            return self._sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False  # nothing to read: open and quiet
        except OSError:
            return True  # reset

    def close(self) -> None:
        """Close the connection; sends and receives in progress or to come raise :class:`ConnectionClosed`."""
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # the peer reset it already
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._sock.close()
            return
        # The descriptor is released one loop turn later, so that a task waiting on it in another
        # coroutine is woken by the shutdown and fails at once, instead of waiting out its timeout on a
        # descriptor the event loop can no longer watch.
        loop.call_soon(self._sock.close)

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def send(
        self,
        msg_type: MessageType,
        header: Mapping[str, Any] | None = None,
        tensors: Sequence[torch.Tensor] = (),
        *,
        timeout: float | None = None,
    ) -> None:
        """Send one frame of ``msg_type`` with a JSON-serialisable ``header`` and ``tensors``.

        Tensors on another device are copied to the CPU and non-contiguous ones made contiguous (one copy
        each); contiguous CPU tensors are sent from their own memory. Raises :class:`ProtocolError` for a
        header that is not JSON or a frame over the limits (nothing is sent), :class:`TransportTimeout`
        when the peer stops reading for ``timeout`` (default: the connection's), or
        :class:`ConnectionClosed`. After those two, or a cancellation mid-send, part of the frame may be
        gone: close the connection.
        """
        wait = self.timeout if timeout is None else timeout
        wire = [_to_wire(t) for t in tensors]
        specs = [spec for spec, _ in wire]
        head_body = encode_header(header or {}, specs)
        payload_len = sum(spec.nbytes for spec in specs)
        if len(head_body) > self.limits.max_header_bytes:
            raise ProtocolError(f"header of {len(head_body)} bytes exceeds the limit of {self.limits.max_header_bytes}")
        if payload_len > self.limits.max_payload_bytes:
            raise ProtocolError(f"payload of {payload_len} bytes exceeds the limit of {self.limits.max_payload_bytes}")
        prefix = encode_prefix(msg_type, len(head_body), payload_len)
        views = [_byte_view(t) for spec, t in wire if spec.nbytes]
        async with self._send_lock:
            if self._pacer is not None:
                await self._pacer.start_frame()
            frame = self._out.frame(prefix) if self._out is not None else None
            head = prefix + (head_body if frame is None else frame.seal_header(head_body))
            if len(head) + payload_len <= COALESCE_BYTES:
                parts = [head, *(views if frame is None else [frame.chunk(v) for v in views])]
                if isinstance(frame, MacFrame) and payload_len:
                    parts.append(frame.trailer())
                await self._send_buffer(b"".join(parts), wait)
            elif frame is None:
                await self._send_buffer(head, wait)
                for view in views:
                    await self._send_buffer(view, wait)
            else:
                await self._send_buffer(head, wait)
                await self._send_guarded(views, frame, wait)

    async def _send_guarded(self, views: list[memoryview], frame: MacFrame | SealedFrame, wait: float) -> None:
        """Send a large payload: out of its own memory with the MAC computed while the socket (or the emulated
        link) is busy, or encrypted chunk by chunk."""
        if isinstance(frame, MacFrame):
            for view in views:
                hashing = _Hashing(frame, view)
                await self._send_buffer(view, wait, hashing.step)
                hashing.finish()
            await self._send_buffer(frame.trailer(), wait)
            return
        for view in views:
            for start in range(0, len(view), CHUNK_BYTES):
                await self._send_buffer(await offload(frame.chunk, view[start : start + CHUNK_BYTES]), wait)

    async def recv(
        self,
        *,
        into: Sequence[torch.Tensor] = (),
        timeout: float | None = None,
        limits: FrameLimits | None = None,
    ) -> Message:
        """Receive one frame.

        ``into`` offers preallocated tensors: the i-th received tensor is read in place into ``into[i]``
        when dtype and shape match (and it is a contiguous CPU tensor), else into a new tensor. Raises
        :class:`ProtocolError` for a malformed frame or one over ``limits`` (default: the connection's;
        checked before allocating), :class:`TransportTimeout` when a wait exceeds ``timeout`` (default:
        the connection's), or :class:`ConnectionClosed` when the peer goes away. After any of these, or
        a cancellation mid-frame, the stream may be out of step: close the connection.
        """
        wait = self.timeout if timeout is None else timeout
        async with self._recv_lock:
            await self._recv_exactly(memoryview(self._prefix_buf), wait, "the frame prefix")
            prefix = decode_prefix(self._prefix_buf, self.limits if limits is None else limits)
            frame = self._in.frame(bytes(self._prefix_buf)) if self._in is not None else None
            wire_len = prefix.header_len + (0 if frame is None else TAG_BYTES)
            if len(self._header_buf) < wire_len:
                self._header_buf = bytearray(wire_len)
            header_view = memoryview(self._header_buf)[:wire_len]
            await self._recv_exactly(header_view, wait, "the frame header")
            body = header_view if frame is None else frame.open_header(header_view)
            meta, specs = decode_header(body, prefix.payload_len)
            tensors = []
            for i, spec in enumerate(specs):
                tensor = _reusable(into[i], spec) if i < len(into) else None
                if tensor is None:
                    tensor = torch.empty(spec.shape, dtype=getattr(torch, spec.dtype))
                if spec.nbytes:
                    if frame is None:
                        await self._recv_exactly(_byte_view(tensor), wait, f"tensor {i}")
                    else:
                        await self._recv_guarded(_byte_view(tensor), frame, wait, f"tensor {i}")
                tensors.append(tensor)
            if isinstance(frame, MacFrame) and prefix.payload_len:
                tag = memoryview(self._tag_buf)
                await self._recv_exactly(tag, wait, "the payload tag")
                frame.check_trailer(tag)
        return Message(prefix.type, meta, tuple(tensors))

    async def _recv_guarded(self, view: memoryview, frame: MacFrame | SealedFrame, wait: float, what: str) -> None:
        """Fill ``view``: in place, the MAC computed over what has arrived whenever the socket is empty (so only
        the bytes of the last read are hashed after the last byte), or received sealed and opened into it."""
        if isinstance(frame, MacFrame):
            hashing = _Hashing(frame, view)
            await self._recv_exactly(view, wait, what, hashing.upto)
            hashing.finish()
            return
        if self._scratch is None:
            self._scratch = bytearray(CHUNK_BYTES + TAG_BYTES)
        for start in range(0, len(view), CHUNK_BYTES):
            piece = view[start : start + CHUNK_BYTES]
            sealed = memoryview(self._scratch)[: len(piece) + TAG_BYTES]
            await self._recv_exactly(sealed, wait, what)
            piece[:] = frame.open_chunk(sealed)

    async def _recv_exactly(self, view: memoryview, timeout: float, what: str,
                            idle: Callable[[int], bool] | None = None) -> None:
        """Fill ``view`` from the socket; read directly while data is buffered, wait on the loop otherwise.

        ``idle(received)``, when given, is called instead of waiting while the socket is empty; it does some
        work on the bytes received so far and says whether it did any (then the socket is tried again first).
        """
        loop = asyncio.get_running_loop()
        got, size, unyielded = 0, len(view), 0
        while got < size:
            if unyielded >= SLICE_BYTES:
                await asyncio.sleep(0)
                unyielded = 0
            try:
                count = self._sock.recv_into(view[got:])
                unyielded += count
            except BlockingIOError:
                if idle is not None and idle(got):
                    continue
                # Waiting on the loop costs a task per wait, so it is only paid when the socket is empty.
                count = await self._within(loop.sock_recv_into(self._sock, view[got:]), timeout, f"receiving {what}")
                unyielded = 0
            except OSError as exc:
                raise self._failure(f"receiving {what}", exc) from None
            if count == 0:
                if self._closed:
                    raise self._failure(f"receiving {what}")
                if what == "the frame prefix" and got == 0:
                    raise ConnectionClosed(f"{self.peer} closed the connection")
                raise ConnectionClosed(f"{self.peer} closed the connection mid-frame ({what}: {got} of {size} bytes)")
            got += count

    async def _send_buffer(self, data: bytes | memoryview, timeout: float, idle: Callable[[], bool] | None = None) -> None:
        """Send all of ``data`` from its own memory, in slices bounded by the timeout and the link shape.

        ``idle()``, when given, is called instead of waiting while the socket's buffer is full or the link
        schedule holds the next slice back; it says whether it did any work.
        """
        loop = asyncio.get_running_loop()
        view = memoryview(data).cast("B")
        step = SLICE_BYTES if self._pacer is None else self._pacer.slice_bytes
        sent = 0
        while sent < len(view):
            piece = view[sent : sent + step]
            if self._pacer is not None:
                await self._pacer.admit(len(piece), idle)
            elif sent:
                await asyncio.sleep(0)
            done = self._send_some(piece)
            if done < len(piece) and idle is not None and idle():
                # One step of work, then one more try: retrying after every small step would hand the kernel
                # a trickle of small writes (more CPU per byte on both ends) instead of waiting for room.
                done += self._send_some(piece[done:])
            if done < len(piece):
                await self._within(loop.sock_sendall(self._sock, piece[done:]), timeout, "sending")
            sent += len(piece)

    def _send_some(self, piece: memoryview) -> int:
        """Bytes of ``piece`` the socket takes now without blocking."""
        try:
            return self._sock.send(piece)
        except BlockingIOError:
            return 0
        except OSError as exc:
            raise self._failure("sending", exc) from None

    async def _within(self, wait: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
        """Await a socket operation of the loop, turning its failures into this package's errors."""
        try:
            return await within(wait, timeout)
        except asyncio.TimeoutError:  # before OSError: since Python 3.11 TimeoutError is one
            raise TransportTimeout(f"{self.peer} did not make progress for {timeout:g} s while {what}") from None
        except OSError as exc:
            raise self._failure(what, exc) from None

    def _failure(self, what: str, exc: OSError | None = None) -> ConnectionClosed:
        """The error for a socket that failed (or was closed by :meth:`close`) while ``what``."""
        if self._closed:
            return ConnectionClosed(f"connection to {self.peer} was closed on this side while {what}")
        reason = os_error_reason(exc) if exc is not None else "closed by the peer"
        return ConnectionClosed(f"connection to {self.peer} failed while {what}: {reason}")


class _Hashing:
    """The MAC of one payload buffer, computed in order, in steps, whenever the socket leaves time for it."""

    def __init__(self, frame: MacFrame, view: memoryview) -> None:
        self._frame, self._view, self._done = frame, view, 0

    def step(self) -> bool:
        """Hash the next :data:`IDLE_HASH_BYTES` (a sender waiting on its socket); False when all are hashed."""
        return self.upto(min(len(self._view), self._done + IDLE_HASH_BYTES), at_least=1)

    def upto(self, end: int, at_least: int = 0) -> bool:
        """Hash up to byte ``end`` (what a receiver has so far) if that is more than ``at_least`` new bytes
        (default :data:`IDLE_HASH_MIN_BYTES`)."""
        if end - self._done < (at_least or IDLE_HASH_MIN_BYTES):
            return False
        self._frame.chunk(self._view[self._done : end])
        self._done = end
        return True

    def finish(self) -> None:
        """Hash what is left: after the last byte was received, or when the last slice has gone out."""
        self.upto(len(self._view), at_least=1)


def _to_wire(tensor: torch.Tensor) -> tuple[TensorSpec, torch.Tensor]:
    """The spec of ``tensor`` and a contiguous CPU tensor holding its data (itself when already so)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    if not tensor.is_contiguous():
        tensor = tensor.contiguous()
    return spec_for(str(tensor.dtype).removeprefix("torch."), tensor.shape), tensor


def _byte_view(tensor: torch.Tensor) -> memoryview:
    """A writable byte view of a non-empty contiguous CPU tensor's memory (no copy)."""
    return tensor.reshape(-1).view(torch.uint8).numpy().data


def _reusable(tensor: torch.Tensor, spec: TensorSpec) -> torch.Tensor | None:
    """``tensor`` if a frame's tensor of ``spec`` can be read into it in place, else None."""
    if (
        tensor.device.type == "cpu"
        and tensor.is_contiguous()
        and str(tensor.dtype).removeprefix("torch.") == spec.dtype
        and tuple(tensor.shape) == spec.shape
    ):
        return tensor
    return None


def check_timeout(timeout: float) -> None:
    """Raise :class:`NodeError` unless ``timeout`` is a positive number of seconds."""
    if not timeout > 0:
        raise NodeError(f"connection timeout must be > 0 s, got {timeout}")


def os_error_reason(exc: OSError) -> str:
    """The system's words for a socket error ("Connection refused"), not asyncio's wrapper text."""
    return os.strerror(exc.errno) if exc.errno else str(exc)
