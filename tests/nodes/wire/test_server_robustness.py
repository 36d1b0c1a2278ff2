"""A server closes only the connection that misbehaves, logs why, and keeps serving the others."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
import time

import pytest

from nodes.wire import Connection, MessageType, serve
from nodes.wire.auth import authenticate_client
from nodes.wire.frame import MAGIC, PROTOCOL_VERSION
from tests.nodes.wire.conftest import SECRET, assert_serves, echo, raw_socket, read_until_closed


def _prefix(msg_type: int, header_len: int, payload_len: int, magic: bytes = MAGIC, version: int = PROTOCOL_VERSION) -> bytes:
    return struct.pack("!4sBBHIQ", magic, version, msg_type, 0, header_len, payload_len)


def _frame(msg_type: int, meta: dict, tensors: list[dict], payload: bytes) -> bytes:
    header = json.dumps({"meta": meta, "tensors": tensors}).encode()
    return _prefix(msg_type, len(header), len(payload)) + header + payload


async def _authenticated_raw(server) -> tuple[socket.socket, Connection]:
    """A socket that has passed the handshake, on which the test then writes whatever bytes it likes
    (sealed with the connection's session keys by :func:`_seal`), and its honest Connection."""
    sock = await raw_socket(server)
    conn = Connection(sock, timeout=5.0)
    await authenticate_client(conn, SECRET)
    return sock, conn


def _seal(conn: Connection, data: bytes) -> bytes:
    """``data`` (a frame, well-formed or not) with the tags an authenticated sender adds, so that the server
    gets past the MAC and judges the frame itself."""
    if len(data) < 20:
        return data
    header_len = struct.unpack("!I", data[8:12])[0]
    frame = conn._out.frame(data[:20])
    header, rest = data[20 : 20 + header_len], data[20 + header_len :]
    return data[:20] + frame.seal_header(header) + bytes(frame.chunk(rest)) + (frame.trailer() if rest else b"")


BAD_FRAMES = {
    "garbage prefix": (b"\x00\x01garbage that is no frame at all", "bad magic"),
    "http request": (b"GET / HTTP/1.1\r\nHost: node\r\n\r\n", "bad magic b'GET '"),
    "bad magic": (_prefix(MessageType.FORWARD, 2, 0, magic=b"XXXX") + b"{}", "bad magic b'XXXX'"),
    "future version": (_prefix(MessageType.FORWARD, 2, 0, version=9) + b"{}", "unsupported protocol version 9"),
    "type out of range": (_prefix(99, 2, 0) + b"{}", "unknown message type 99"),
    "header not json": (_prefix(MessageType.FORWARD, 5, 0) + b"{oops", "header is not valid UTF-8 JSON"),
    "sizes disagree": (
        _frame(MessageType.FORWARD, {}, [{"dtype": "float32", "shape": [4], "nbytes": 16}], b""),
        "tensors describe 16 bytes but the prefix declares a payload of 0",
    ),
}


@pytest.mark.parametrize("when", ["before the handshake", "after the handshake"])
@pytest.mark.parametrize("case", list(BAD_FRAMES))
async def test_malformed_frame_closes_that_connection_with_a_logged_reason(echo_server, caplog, case, when):
    data, reason = BAD_FRAMES[case]
    _, honest = await _authenticated_raw(echo_server)  # a client already connected must be unaffected too
    if when == "before the handshake":
        sock = await raw_socket(echo_server)
    else:
        sock, conn = await _authenticated_raw(echo_server)
        data = _seal(conn, data)
    with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
        await asyncio.get_running_loop().sock_sendall(sock, data)
        reply = await read_until_closed(sock, within=3.0)
    sock.close()
    assert reason in caplog.text
    assert reason.encode() in reply  # the ERROR frame told the peer why, before closing
    await assert_serves(echo_server)
    await honest.send(MessageType.PING, {"still": "here"})
    assert (await honest.recv()).header == {"still": "here"}
    honest.close()


@pytest.mark.parametrize(
    ("when", "declared", "limit"),
    [
        ("before the handshake", 1 << 20, 0),  # under the server's limit, but no tensors before auth
        ("before the handshake", 1 << 60, 0),
        ("after the handshake", (2 << 20) + 1, 2 << 20),
        ("after the handshake", 1 << 60, 2 << 20),
    ],
)
async def test_oversized_frame_is_refused_from_its_prefix_without_reading_or_allocating(
    echo_server, caplog, when, declared, limit
):
    # The echo server allows 2 MiB of payload and waits 5 s for data. Only the prefix is sent: a server
    # that read on would wait out its timeout, one that allocated an exabyte would fail inside torch.
    sock = await raw_socket(echo_server) if when == "before the handshake" else (await _authenticated_raw(echo_server))[0]
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
        await asyncio.get_running_loop().sock_sendall(sock, _prefix(MessageType.HELLO, 40, declared))
        await read_until_closed(sock, within=3.0)
    sock.close()
    assert time.monotonic() - start < 2.0
    assert f"payload of {declared} bytes exceeds the limit of {limit}" in caplog.text
    assert "handler failed" not in caplog.text
    await assert_serves(echo_server)


async def test_oversized_header_is_refused_from_its_prefix(echo_server, caplog):
    sock, _ = await _authenticated_raw(echo_server)
    with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
        await asyncio.get_running_loop().sock_sendall(sock, _prefix(MessageType.FORWARD, 2**31, 0))
        await read_until_closed(sock, within=3.0)
    sock.close()
    assert f"header of {2**31} bytes exceeds the limit of {1024 * 1024}" in caplog.text
    await assert_serves(echo_server)


FRAME = _frame(MessageType.FORWARD, {"step": 1}, [{"dtype": "float32", "shape": [1000], "nbytes": 4000}], b"\x01" * 4000)
HEADER_LEN = len(FRAME) - 20 - 4000


@pytest.mark.parametrize(
    ("cut", "part"),
    [
        (7, "the frame prefix: 7 of 20 bytes"),
        (25, f"the frame header: 5 of {HEADER_LEN + 16} bytes"),
        (20 + HEADER_LEN + 16 + 100, "tensor 0: 100 of 4000 bytes"),
    ],
)
async def test_peer_disconnecting_mid_frame_is_logged_and_the_server_goes_on(echo_server, caplog, cut, part):
    sock, conn = await _authenticated_raw(echo_server)
    with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
        await asyncio.get_running_loop().sock_sendall(sock, _seal(conn, FRAME)[:cut])
        await asyncio.sleep(0.05)
        sock.close()
        await asyncio.sleep(0.2)
    assert "closed the connection mid-frame" in caplog.text
    assert part in caplog.text
    await assert_serves(echo_server)


async def test_silent_client_is_dropped_after_the_timeout(caplog):
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=0.3)
    try:
        sock = await raw_socket(server)
        start = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
            await read_until_closed(sock, within=3.0)
        sock.close()
        assert 0.25 < time.monotonic() - start < 2.5
        assert "did not make progress for 0.3 s while receiving the frame prefix" in caplog.text
        await assert_serves(server)
    finally:
        await server.close()


async def test_handler_crash_is_logged_and_does_not_stop_the_server(caplog):
    calls = []

    async def flaky(conn: Connection) -> None:
        calls.append(conn.peer)
        if len(calls) == 1:
            raise RuntimeError("bug in the stage code")
        await echo(conn)

    server = await serve("127.0.0.1", 0, flaky, SECRET, timeout=5.0)
    try:
        with caplog.at_level(logging.ERROR, logger="nodes.wire.endpoints"):
            sock, _ = await _authenticated_raw(server)
            await read_until_closed(sock, within=3.0)
            sock.close()
        assert "handler failed on the connection from" in caplog.text
        assert "bug in the stage code" in caplog.text
        await assert_serves(server)
    finally:
        await server.close()


async def test_close_ends_open_connections_and_frees_the_port():
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0)
    sock, _ = await _authenticated_raw(server)
    address = server.address
    await server.close()
    assert await read_until_closed(sock, within=2.0) == b""
    sock.close()
    with socket.create_server(address):  # the port can be bound again
        pass


async def test_close_ends_a_handler_that_loses_its_cancellation():
    # asyncio.wait_for before Python 3.12 can swallow a cancellation (engine.deadline); closing the handlers'
    # connections still ends such a handler instead of leaving the server (an agent's SIGTERM) waiting on it.
    ignored = []

    async def deaf(conn: Connection) -> None:
        while True:
            try:
                await conn.recv(timeout=3600.0)
            except asyncio.CancelledError:
                if ignored:  # only the first: a server that did hang is then ended by wait_for's timeout
                    raise
                ignored.append(True)

    server = await serve("127.0.0.1", 0, deaf, SECRET, timeout=5.0)
    sock, _ = await _authenticated_raw(server)
    await asyncio.sleep(0.1)  # the handler waits for a frame
    await asyncio.wait_for(server.close(), 5.0)
    assert ignored == [True]
    assert await read_until_closed(sock, within=2.0) == b""
    sock.close()
