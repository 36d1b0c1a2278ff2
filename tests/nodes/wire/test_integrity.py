"""Every frame after the handshake is protected: a relay that alters, injects, replays, drops or reorders a
frame is detected; roles, the server's name and the protection mode are bound by the handshake."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from pathlib import Path

import pytest
import torch

from nodes.errors import AuthError
from nodes.wire import Connection, LinkShape, MessageType, connect, serve
from nodes.wire.auth import HANDSHAKE_LIMITS
from nodes.wire.frame import PREFIX
from nodes.wire.guard import TAG_BYTES
from nodes.wire.keys import Credentials, node_credential_text
from tests.nodes.wire.conftest import SECRET, echo

HANDSHAKE_FRAMES = 2  # client -> server: HELLO, AUTH_RESPONSE


class TamperingRelay:
    """A TCP relay that parses the client's frames and, from the ``at``-th protected one, applies ``action``."""

    def __init__(self, target: tuple[str, int], action: str, at: int = 1, rewrite_hello=None) -> None:
        self.target, self.action, self.at = target, action, at
        self.rewrite_hello = rewrite_hello
        self.seen = bytearray()

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[:2]

    async def close(self) -> None:
        self._server.close()

    async def _frame(self, reader: asyncio.StreamReader, protected: bool) -> bytes:
        prefix = await reader.readexactly(PREFIX.size)
        _, _, _, _, header_len, payload_len = PREFIX.unpack(prefix)
        extra = (TAG_BYTES + (TAG_BYTES if payload_len else 0)) if protected else 0
        return prefix + await reader.readexactly(header_len + payload_len + extra)

    async def _relay(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def upstream() -> None:
            held: list[bytes] = []
            index = 0
            try:
                while True:
                    if index and self.action == "none":  # pass the rest through as it comes (any mode)
                        while chunk := await reader.read(65536):
                            self.seen.extend(chunk)
                            up_writer.write(chunk)
                            await up_writer.drain()
                        break
                    frame = await self._frame(reader, protected=index >= HANDSHAKE_FRAMES)
                    self.seen.extend(frame)
                    if index == 0 and self.rewrite_hello:
                        frame = self.rewrite_hello(frame)
                    out = [frame]
                    k = index - HANDSHAKE_FRAMES
                    if k == self.at:
                        if self.action == "alter":  # flip one bit of the last payload byte before the tag
                            cut = len(frame) - 2 * TAG_BYTES - 1
                            out = [frame[:cut] + bytes([frame[cut] ^ 1]) + frame[cut + 1 :]]
                        elif self.action == "replay":
                            out = [frame, frame]
                        elif self.action == "drop":
                            out = []
                        elif self.action == "reorder":
                            held, out = [frame], []
                        elif self.action == "inject":  # a well-formed SHUTDOWN frame without the session keys
                            out = [_plain_frame(MessageType.SHUTDOWN, {}), frame]
                    elif held:
                        out, held = [frame, *held], []
                    for part in out:
                        up_writer.write(part)
                    await up_writer.drain()
                    index += 1
            except (asyncio.IncompleteReadError, ConnectionError):
                up_writer.close()

        async def downstream() -> None:
            try:
                while chunk := await up_reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            except ConnectionError:
                pass
            writer.close()

        try:
            await asyncio.gather(upstream(), downstream(), return_exceptions=True)
        except asyncio.CancelledError:  # the test closed the relay under a live connection
            up_writer.close()


def _plain_frame(msg_type: MessageType, meta: dict) -> bytes:
    from nodes.wire.frame import encode_header, encode_prefix

    body = encode_header(meta, [])
    return encode_prefix(msg_type, len(body), 0) + body


async def _record(conn: Connection, got: list[dict]) -> None:
    """A server that notes every frame's header (a SHUTDOWN as ``{"shutdown": True}``)."""
    while True:
        message = await conn.recv()
        if message.type is MessageType.SHUTDOWN:
            got.append({"shutdown": True})
            return
        got.append(message.header)


@pytest.mark.parametrize("action", ["alter", "replay", "drop", "reorder", "inject"])
async def test_a_relay_that_tampers_with_a_frame_after_the_handshake_is_detected(caplog, action):
    got: list[dict] = []
    server = await serve("127.0.0.1", 0, lambda conn: _record(conn, got), SECRET, timeout=5.0)
    relay = TamperingRelay(server.address, action, at=1)
    try:
        with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
            conn = await connect(*await relay.start(), SECRET, timeout=5.0)
            for n in range(4):
                await conn.send(MessageType.FORWARD, {"n": n}, [torch.full((64,), float(n))])
            await asyncio.sleep(0.5)
            conn.close()
            await asyncio.sleep(0.1)
    finally:
        await relay.close()
        await server.close()
    assert "failed its integrity check" in caplog.text
    # Nothing from the tampered frame on was acted on (a replayed frame is taken once), no forged SHUTDOWN.
    assert got == ([{"n": 0}, {"n": 1}] if action == "replay" else [{"n": 0}])


@pytest.mark.parametrize("link", [None, LinkShape.from_mbit(10_000)], ids=["loopback", "paced-link"])
async def test_one_altered_byte_of_a_large_payload_is_detected(caplog, link):
    """12 MB go out while their MAC is computed in the socket's (or the link schedule's) idle time."""
    got: list[dict] = []
    server = await serve("127.0.0.1", 0, lambda conn: _record(conn, got), SECRET, timeout=5.0)
    relay = TamperingRelay(server.address, "alter", at=0)
    try:
        with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
            conn = await connect(*await relay.start(), SECRET, timeout=5.0, shaping=link)
            await conn.send(MessageType.FORWARD, {"n": 0}, [torch.randn(3_000_000)])
            await conn.send(MessageType.FORWARD, {"n": 1}, [torch.randn(8)])
            await asyncio.sleep(1.0)
            conn.close()
    finally:
        await relay.close()
        await server.close()
    assert "failed its integrity check (payload)" in caplog.text
    assert got == []


async def test_frames_are_encrypted_on_request_and_round_trip_exactly():
    pytest.importorskip("cryptography")
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0)
    relay = TamperingRelay(server.address, "none")
    try:
        conn = await connect(*await relay.start(), SECRET, timeout=5.0, protect="encrypt")
        assert conn.protection == "encrypt" and conn.mac is None  # the AEAD carries its own tags
        sent = torch.arange(3_000_000, dtype=torch.float32)  # 12 MB: several sealed chunks
        await conn.send(MessageType.FORWARD, {"secret-looking": "plaintext-marker"}, [sent])
        reply = await conn.recv()
        assert torch.equal(reply.tensors[0], sent) and reply.header == {"secret-looking": "plaintext-marker"}
        conn.close()
    finally:
        await relay.close()
        await server.close()
    assert b"plaintext-marker" not in relay.seen
    assert sent[:1000].numpy().tobytes() not in relay.seen


async def test_a_relay_cannot_downgrade_the_protection_the_client_asked_for():
    pytest.importorskip("cryptography")

    def downgrade(frame: bytes) -> bytes:
        return frame.replace(b'"protect":"encrypt"', b'"protect":"integrity"')

    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0)
    relay = TamperingRelay(server.address, "none", rewrite_hello=lambda f: _resize(downgrade(f)))
    try:
        with pytest.raises(AuthError, match="offered protection 'integrity', weaker than the encrypt asked for"):
            await connect(*await relay.start(), SECRET, timeout=5.0, protect="encrypt")
    finally:
        await relay.close()
        await server.close()


def _resize(frame: bytes) -> bytes:
    """``frame`` with its prefix's header length fixed after an edit of its (unprotected) header."""
    magic, version, kind, reserved, _, payload_len = PREFIX.unpack(frame[: PREFIX.size])
    body = frame[PREFIX.size :]
    return struct.pack("!4sBBHIQ", magic, version, kind, reserved, len(body), payload_len) + body


async def test_the_client_insists_on_the_server_name_it_expects():
    server = await serve("127.0.0.1", 0, echo, SECRET, name="node-1", timeout=5.0)
    try:
        with pytest.raises(AuthError, match="is node 'node-1', not 'node-2'"):
            await connect(*server.address, SECRET, timeout=5.0, expect="node-2")
        conn = await connect(*server.address, SECRET, timeout=5.0, expect="node-1")
        assert conn.peer_name == "node-1"
        conn.close()
    finally:
        await server.close()


async def test_roles_a_node_credential_is_a_peer_everywhere_and_a_coordinator_nowhere():
    roles: list[str | None] = []

    async def handler(conn: Connection) -> None:
        roles.append(conn.role)

    node2 = Credentials.parse(node_credential_text(SECRET, "node-2").encode())
    server = await serve("127.0.0.1", 0, handler, node2, name="node-2", timeout=5.0)
    node1 = Credentials.parse(node_credential_text(SECRET, "node-1").encode())
    try:
        (await connect(*server.address, node1, timeout=5.0)).close()  # node-1 may send data to node-2
        (await connect(*server.address, SECRET, timeout=5.0, role="coordinator")).close()  # the ground station
        with pytest.raises(AuthError, match="node credential of node-1 cannot act as the coordinator of node-2"):
            await connect(*server.address, node1, timeout=5.0, role="coordinator")
        await asyncio.sleep(0.1)
    finally:
        await server.close()
    assert roles == ["peer", "coordinator"]
    assert node1.coordinator != node2.coordinator and node1.peer == node2.peer
    assert SECRET.hex() not in node_credential_text(SECRET, "node-1")


async def test_the_whole_handshake_has_one_deadline(caplog):
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0, handshake_deadline=0.5)
    try:
        reader, writer = await asyncio.open_connection(*server.address)
        start = asyncio.get_running_loop().time()
        with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
            # A byte every 0.1 s: each read makes progress, yet the deadline falls.
            while not reader.at_eof() and asyncio.get_running_loop().time() - start < 3.0:
                try:
                    writer.write(b"L")
                    await writer.drain()
                    await asyncio.wait_for(reader.read(), 0.1)
                except (ConnectionError, asyncio.TimeoutError):
                    pass
        writer.close()
        assert 0.4 < asyncio.get_running_loop().time() - start < 2.0
        assert "no handshake within 0.5 s" in caplog.text
    finally:
        await server.close()


async def test_slow_strangers_cannot_lock_out_an_honest_client():
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=30.0, max_unauthenticated=8)
    strangers = []
    try:
        for _ in range(40):
            strangers.append(await asyncio.open_connection(*server.address))
        await asyncio.sleep(0.1)
        conn = await connect(*server.address, SECRET, timeout=5.0)
        await conn.send(MessageType.PING, {"n": 1})
        assert (await conn.recv()).header == {"n": 1}
        conn.close()
    finally:
        for _, writer in strangers:
            writer.close()
        await server.close()


def test_handshake_frames_stay_small():
    assert HANDSHAKE_LIMITS.max_payload_bytes == 0 and HANDSHAKE_LIMITS.max_header_bytes <= 4096


@pytest.mark.parametrize("link", [None, LinkShape.from_mbit(10_000)], ids=["loopback", "paced-link"])
@pytest.mark.parametrize("macs", [("hmac-sha256",), ("poly1305", "hmac-sha256")])
async def test_the_mac_is_negotiated_and_large_frames_round_trip(monkeypatch, macs, link):
    if "poly1305" in macs:
        pytest.importorskip("cryptography")
    monkeypatch.setattr("nodes.wire.auth.available_macs", lambda: macs)
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0)
    try:
        conn = await connect(*server.address, SECRET, timeout=5.0, shaping=link)
        assert conn.mac == macs[0] and conn.protection == "integrity"
        sent = torch.randn(3_000_000)  # 12 MB: hashed in many idle-time steps on both ends
        await conn.send(MessageType.FORWARD, {"n": 1}, [sent, torch.ones(3, dtype=torch.int64)])
        reply = await conn.recv()
        assert torch.equal(reply.tensors[0], sent) and reply.tensors[1].tolist() == [1, 1, 1]
        conn.close()
    finally:
        await server.close()


def test_integrity_needs_only_the_standard_library(tmp_path):
    """Without ``cryptography`` (a Jetson with python, torch, numpy, pillow) frames are still MAC'd,
    and asking for encryption fails with one clear line."""
    import subprocess
    import sys

    script = tmp_path / "nocrypto.py"
    script.write_text(
        "import sys; sys.modules['cryptography'] = None\n"
        "import asyncio, torch\n"
        "from nodes.wire import serve, connect, MessageType\n"
        "from nodes.errors import NodeError\n"
        "async def echo(conn):\n"
        "    m = await conn.recv(); await conn.send(m.type, m.header, m.tensors)\n"
        "async def main():\n"
        "    server = await serve('127.0.0.1', 0, echo, b'x' * 32)\n"
        "    conn = await connect(*server.address, b'x' * 32)\n"
        "    await conn.send(MessageType.FORWARD, {'n': 1}, [torch.arange(10.0)])\n"
        "    reply = await conn.recv()\n"
        "    print(conn.mac, reply.tensors[0].sum().item())\n"
        "    try:\n"
        "        await connect(*server.address, b'x' * 32, protect='encrypt')\n"
        "    except NodeError as exc:\n"
        "        print('refused:', exc)\n"
        "    await server.close()\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "hmac-sha256 45.0"
    assert lines[1].startswith("refused: encrypted links need the 'cryptography' package")
