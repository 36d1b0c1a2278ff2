"""Opening connections: :func:`serve` accepts and authenticates peers, :func:`connect` dials one.

Before a client has authenticated it costs the server little and for a short time only: one deadline
bounds the whole handshake (not each read: a byte every few seconds does not keep a socket), at most
``max_unauthenticated`` handshakes run at once (a new one evicts the oldest, so slow sockets cannot lock a
coordinator out) and at most ``max_connections`` connections are open in all; what is refused or dropped
before authentication is logged at most a few lines a minute.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from engine.deadline import within
from nodes.errors import AuthError, NodeError, ProtocolError
from nodes.wire.auth import authenticate_client, authenticate_server
from nodes.wire.frame import FrameLimits, MessageType
from nodes.wire.keys import Credentials
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

HANDSHAKE_DEADLINE = 5.0
"""Seconds a client has for the whole handshake."""
MAX_UNAUTHENTICATED = 32
MAX_CONNECTIONS = 256


class RateLimitedLog:
    """Warnings about strangers, at most ``burst`` per ``period`` seconds; the rest are counted and summed up."""

    def __init__(self, logger: logging.Logger, burst: int = 5, period: float = 60.0) -> None:
        self._log, self._burst, self._period = logger, burst, period
        self._window, self._count, self._suppressed = 0.0, 0, 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window >= self._period:
            if self._suppressed:
                self._log.warning("%d more such messages suppressed in the last %g s", self._suppressed, self._period)
            self._window, self._count, self._suppressed = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._log.warning(msg, *args)
        else:
            self._suppressed += 1


class Server:
    """A listening socket that authenticates each connection and runs a handler on it; see :func:`serve`."""

    def __init__(
        self,
        listener: socket.socket,
        handler: Handler,
        secret: bytes | Credentials,
        wrap: Callable[[socket.socket], Connection],
        *,
        name: str = "node",
        protect: str = "integrity",
        handshake_deadline: float = HANDSHAKE_DEADLINE,
        max_unauthenticated: int = MAX_UNAUTHENTICATED,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        """Start accepting on ``listener``; ``wrap`` turns each accepted socket into a :class:`Connection`."""
        self._listener = listener
        self._handler = handler
        self._secret = secret
        self._wrap = wrap
        self.name = name
        """The node name this server proves in the handshake."""
        self._protect = protect
        self._deadline = handshake_deadline
        self._max_unauthenticated = max_unauthenticated
        self._max_connections = max_connections
        self._tasks: dict[asyncio.Task[None], Connection] = {}
        self._unauthenticated: OrderedDict[asyncio.Task[None], Connection] = OrderedDict()
        self._strangers = RateLimitedLog(log)
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
        for conn in list(self._tasks.values()):  # a handler whose cancellation was lost (engine.deadline) ends too
            conn.close()
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
                self._strangers.warning("accept failed on %s: %s", self.address, exc)
                await asyncio.sleep(0.1)
                continue
            if len(self._tasks) >= self._max_connections:
                self._strangers.warning("refusing a connection: %d connections open already", len(self._tasks))
                sock.close()
                continue
            try:
                conn = self._wrap(sock)
            except OSError as exc:  # reset between accept and here
                self._strangers.warning("dropping a connection that failed as it opened: %s", os_error_reason(exc))
                sock.close()
                continue
            if len(self._unauthenticated) >= self._max_unauthenticated:
                # The oldest handshake is the nearest its deadline anyway; evicting it keeps room for the
                # coordinator however many slow strangers hold sockets open.
                oldest, stale = self._unauthenticated.popitem(last=False)
                self._strangers.warning("%d handshakes in progress; dropping the oldest, from %s",
                                        self._max_unauthenticated, stale.peer)
                oldest.cancel()  # its handler closes the connection once its pending read has let go
            task = loop.create_task(self._serve_one(conn))
            self._tasks[task] = conn
            self._unauthenticated[task] = conn
            task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        self._unauthenticated.pop(task, None)

    async def _serve_one(self, conn: Connection) -> None:
        task = asyncio.current_task()
        try:
            try:
                await within(authenticate_server(conn, self._secret, self.name, protect=self._protect), self._deadline)
            except TransportTimeout as exc:  # one read stalled (a TimeoutError too: caught first)
                self._strangers.warning("closing connection from %s: %s", conn.peer, exc)
                return
            except asyncio.TimeoutError:
                self._strangers.warning("closing connection from %s: no handshake within %g s", conn.peer, self._deadline)
                return
            except (AuthError, ProtocolError) as exc:
                self._strangers.warning("closing connection from %s: %s", conn.peer, exc)
                await _tell_peer(conn, str(exc))
                return
            except NodeError as exc:
                self._strangers.warning("closing connection from %s: %s", conn.peer, exc)
                return
            self._unauthenticated.pop(task, None)  # type: ignore[arg-type]
            await self._handler(conn)
        except ProtocolError as exc:
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
    secret: bytes | Credentials,
    *,
    name: str = "node",
    protect: str = "integrity",
    timeout: float = DEFAULT_TIMEOUT,
    limits: FrameLimits = FrameLimits(),
    shaping: LinkShape | None = None,
    backlog: int = 64,
    handshake_deadline: float = HANDSHAKE_DEADLINE,
    max_unauthenticated: int = MAX_UNAUTHENTICATED,
    max_connections: int = MAX_CONNECTIONS,
) -> Server:
    """Listen on ``host:port`` (0 = an ephemeral port, see :attr:`Server.address`) and, for each client
    that passes the handshake, await ``handler(conn)``; the connection is closed when it returns.

    A client that fails authentication, sends a malformed or oversized frame, times out or vanishes has
    its connection closed with the reason logged (and sent in an ERROR frame when the stream allows);
    the server keeps serving the others. An exception escaping ``handler`` is logged the same way.
    ``name`` is the identity the server proves (clients may insist on it); ``protect`` the least
    protection it runs (``integrity`` or ``encrypt``); ``conn.role`` tells the handler which role the
    client proved.
    """
    check_timeout(timeout)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as exc:
        raise ConnectionClosed(f"cannot listen on {host}:{port}: {os_error_reason(exc)}") from None
    listener.setblocking(False)
    return Server(listener, handler, secret, partial(Connection, timeout=timeout, limits=limits, shaping=shaping),
                  name=name, protect=protect, handshake_deadline=handshake_deadline,
                  max_unauthenticated=max_unauthenticated, max_connections=max_connections)


async def connect(
    host: str,
    port: int,
    secret: bytes | Credentials,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    role: str = "peer",
    expect: str | None = None,
    protect: str = "integrity",
    limits: FrameLimits = FrameLimits(),
    shaping: LinkShape | None = None,
) -> Connection:
    """Open a connection to a :func:`serve` server and run the handshake as ``role`` (``peer`` or
    ``coordinator``), insisting on the server's name ``expect`` when given; raise
    :class:`ConnectionClosed` when the server cannot be reached, :class:`AuthError` when either side
    fails to prove its key, or :class:`TransportTimeout`."""
    check_timeout(timeout)
    loop = asyncio.get_running_loop()
    try:
        infos = await within(loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
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
        await within(authenticate_client(conn, secret, role=role, expect=expect, protect=protect), timeout)
    except TransportTimeout:
        conn.close()
        raise
    except asyncio.TimeoutError:
        conn.close()
        raise TransportTimeout(f"the handshake with {host}:{port} took longer than {timeout:g} s") from None
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
            await within(loop.sock_connect(sock, address), timeout)
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
