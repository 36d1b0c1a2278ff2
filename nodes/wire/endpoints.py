"""Opening connections: :func:`serve` accepts and authenticates peers, :func:`connect` dials one."""

from __future__ import annotations

import asyncio
import logging
import socket
from functools import partial
from typing import Any, Awaitable, Callable

from nodes.errors import AuthError, NodeError, ProtocolError
from nodes.wire.auth import authenticate_client, authenticate_server
from nodes.wire.frame import FrameLimits, MessageType
from nodes.wire.shaping import LinkShape
from nodes.wire.transport import (
    DEFAULT_TIMEOUT,
    Connection,
    ConnectionClosed,
    TransportTimeout,
    check_timeout,
    os_error_reason,
)

log = logging.getLogger(__name__)

Handler = Callable[[Connection], Awaitable[None]]
"""What :func:`serve` runs on each authenticated connection; the connection is closed when it returns."""


class Server:
    """A listening socket that authenticates each connection and runs a handler on it; see :func:`serve`."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Handler,
        secret: bytes,
        wrap: Callable[[socket.socket], Connection],
    ) -> None:
        """Start accepting on ``listener``; ``wrap`` turns each accepted socket into a :class:`Connection`."""
        self._listener = listener
        self._handler = handler
        self._secret = secret
        self._wrap = wrap
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = asyncio.get_running_loop().create_task(self._accept_loop())

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` the server listens on (the real port when 0 was asked)."""
        host, port = self._listener.getsockname()[:2]
        return host, port

    async def close(self) -> None:
        """Stop accepting, cancel the handlers of open connections and wait for them to finish."""
        self._accepting.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(self._accepting, *self._tasks, return_exceptions=True)
        # Closed only now: the cancelled accept has unregistered the descriptor from the event loop.
        self._listener.close()
        await asyncio.sleep(0)  # one loop turn, in which the handlers' connections release their sockets

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, _ = await loop.sock_accept(self._listener)
            except OSError as exc:
                # Out of file descriptors or an aborted handshake: log it, keep serving the others.
                log.warning("accept failed on %s: %s", self.address, exc)
                await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._serve_one(sock))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve_one(self, sock: socket.socket) -> None:
        try:
            conn = self._wrap(sock)
        except OSError as exc:  # reset between accept and here
            log.warning("dropping a connection that failed as it opened: %s", os_error_reason(exc))
            sock.close()
            return
        try:
            await authenticate_server(conn, self._secret)
            await self._handler(conn)
        except (AuthError, ProtocolError) as exc:
            log.warning("closing connection from %s: %s", conn.peer, exc)
            await _tell_peer(conn, str(exc))
        except NodeError as exc:
            log.warning("closing connection from %s: %s", conn.peer, exc)
        except Exception:
            log.exception("handler failed on the connection from %s; closing it", conn.peer)
        finally:
            conn.close()


async def serve(
    host: str,
    port: int,
    handler: Handler,
    secret: bytes,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    limits: FrameLimits = FrameLimits(),
    shaping: LinkShape | None = None,
    backlog: int = 64,
) -> Server:
    """Listen on ``host:port`` (0 = an ephemeral port, see :attr:`Server.address`) and, for each client
    that passes the handshake, await ``handler(conn)``; the connection is closed when it returns.

    A client that fails authentication, sends a malformed or oversized frame, times out or vanishes has
    its connection closed with the reason logged (and sent in an ERROR frame when the stream allows);
    the server keeps serving the others. An exception escaping ``handler`` is logged the same way.
    """
    check_timeout(timeout)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise ConnectionClosed(f"cannot listen on {host}:{port}: {os_error_reason(exc)}") from None
    listener.setblocking(False)
    return Server(listener, handler, secret, partial(Connection, timeout=timeout, limits=limits, shaping=shaping))


async def connect(
    host: str,
    port: int,
    secret: bytes,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    limits: FrameLimits = FrameLimits(),
    shaping: LinkShape | None = None,
) -> Connection:
    """Open a connection to a :func:`serve` server and run the handshake; raise :class:`ConnectionClosed`
    when the server cannot be reached, :class:`AuthError` when either side fails to prove the secret, or
    :class:`TransportTimeout`."""
    check_timeout(timeout)
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except asyncio.TimeoutError:
        raise TransportTimeout(f"resolving {host} took longer than {timeout:g} s") from None
    except OSError as exc:  # socket.gaierror: its errno is not one os.strerror knows
        raise ConnectionClosed(f"cannot resolve {host}: {exc.strerror or exc}") from None
    sock = await _open(host, port, infos, timeout)
    try:
        conn = Connection(sock, timeout=timeout, limits=limits, shaping=shaping)
    except OSError as exc:  # reset as soon as it opened
        sock.close()
        raise ConnectionClosed(f"connection to {host}:{port} failed as it opened: {os_error_reason(exc)}") from None
    try:
        await authenticate_client(conn, secret)
    except BaseException:
        conn.close()
        raise
    return conn


async def _open(host: str, port: int, infos: list[Any], timeout: float) -> socket.socket:
    """A socket connected to the first of ``host``'s addresses that accepts (e.g. ::1, then 127.0.0.1)."""
    loop = asyncio.get_running_loop()
    failure = ""
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, address), timeout)
            return sock
        except asyncio.TimeoutError:
            sock.close()
            raise TransportTimeout(f"connecting to {host}:{port} took longer than {timeout:g} s") from None
        except OSError as exc:
            sock.close()
            failure = os_error_reason(exc)
    raise ConnectionClosed(f"cannot connect to {host}:{port}: {failure}")


async def _tell_peer(conn: Connection, reason: str) -> None:
    """Best effort: send an ERROR frame with ``reason`` before closing; the peer may be gone already."""
    try:
        await conn.send(MessageType.ERROR, {"reason": reason}, timeout=min(conn.timeout, 1.0))
    except NodeError:
        pass
