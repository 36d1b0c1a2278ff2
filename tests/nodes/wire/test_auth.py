"""The cluster secret on disk and in the environment, and the mutual handshake over real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat

import pytest

from nodes.errors import AuthError, NodeError
from nodes.wire import Connection, MessageType, connect, load_secret, serve, write_secret
from nodes.wire.auth import (
    client_proof,
    default_secret_path,
    generate_secret,
    server_proof,
    transcript,
)
from tests.nodes.wire.conftest import SECRET, assert_serves, echo


def test_generated_secrets_are_long_and_distinct():
    first, second = generate_secret(), generate_secret()
    assert len(first) == 64 and first != second
    int(first, 16)


def test_write_secret_creates_a_0600_file_that_loads_back(tmp_path):
    path = tmp_path / "deep" / "cluster.secret"
    secret = write_secret(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret(path) == secret.encode()


def test_write_secret_replaces_an_existing_secret(tmp_path):
    path = tmp_path / "cluster.secret"
    write_secret(path, "a" * 20)
    write_secret(path, "b" * 20)
    assert load_secret(path) == b"b" * 20
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.secret"]


def test_secret_precedence_is_path_then_environment_then_default_file(tmp_path, monkeypatch):
    write_secret(default_secret_path(), "d" * 20)
    assert load_secret() == b"d" * 20
    monkeypatch.setenv("LITESRL_SECRET", "e" * 20 + "\n")
    assert load_secret() == b"e" * 20
    write_secret(tmp_path / "given", "p" * 20)
    assert load_secret(tmp_path / "given") == b"p" * 20


def test_missing_secret_names_the_file_and_the_variable(tmp_path):
    with pytest.raises(NodeError, match=r"no cluster secret: .*nope does not exist and \$LITESRL_SECRET is not set"):
        load_secret(tmp_path / "nope")


def test_secret_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "cluster.secret"
    write_secret(path)
    os.chmod(path, 0o644)
    with pytest.raises(NodeError, match="mode 644.*chmod 600"):
        load_secret(path)


def test_short_secrets_are_refused(tmp_path, monkeypatch):
    with pytest.raises(NodeError, match="at least 16"):
        write_secret(tmp_path / "s", "short")
    monkeypatch.setenv("LITESRL_SECRET", "short")
    with pytest.raises(NodeError, match=r"\$LITESRL_SECRET holds a cluster secret of 5 characters"):
        load_secret()


def test_proofs_depend_on_side_key_transcript_and_both_nonces():
    a, b = b"n" * 32, b"m" * 32
    told = transcript("peer", "node-1", "integrity")
    proof = client_proof(SECRET, told, a, b)
    assert len(proof) == 32
    assert proof != server_proof(SECRET, told, a, b)
    assert proof != client_proof(SECRET + b"x", told, a, b)
    assert proof != client_proof(SECRET, told, b, a)
    assert proof != client_proof(SECRET, transcript("peer", "node-2", "integrity"), a, b)
    assert proof != client_proof(SECRET, transcript("peer", "node-1", "encrypt"), a, b)


class Recorder:
    """A TCP relay between a client and a server that keeps every byte that crosses it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.seen = bytearray()

    async def start(self) -> tuple[str, int]:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[:2]

    async def _relay(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pipe(src, dst) -> None:
            while chunk := await src.read(65536):
                self.seen.extend(chunk)
                dst.write(chunk)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    async def close(self) -> None:
        self._server.close()


async def test_handshake_succeeds_and_never_puts_the_secret_on_the_wire():
    server = await serve("127.0.0.1", 0, echo, SECRET, timeout=5.0)
    recorder = Recorder(server.address)
    try:
        conn = await connect(*await recorder.start(), SECRET, timeout=5.0)
        await conn.send(MessageType.PING, {"n": 1})
        assert (await conn.recv()).header == {"n": 1}
        conn.close()
    finally:
        await recorder.close()
        await server.close()
    assert len(recorder.seen) > 200  # the relay saw the handshake and the ping both ways
    assert SECRET not in recorder.seen
    assert SECRET.hex().encode() not in recorder.seen


async def test_wrong_secret_is_refused_by_the_server_and_the_handler_never_runs(caplog):
    handled = []

    async def handler(conn: Connection) -> None:
        handled.append(conn.peer)

    server = await serve("127.0.0.1", 0, handler, SECRET, timeout=5.0)
    recorder = Recorder(server.address)
    wrong = b"wrong-secret-0123456789abcdef"
    try:
        with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
            with pytest.raises(AuthError, match="server refused our proof: client .* failed to prove it holds the peer key"):
                await connect(*await recorder.start(), wrong, timeout=5.0)
            await asyncio.sleep(0.05)
        assert handled == []
        assert "failed to prove it holds the peer key of node" in caplog.text
        assert wrong not in recorder.seen and SECRET not in recorder.seen
        assert wrong.hex().encode() not in recorder.seen and SECRET.hex().encode() not in recorder.seen
    finally:
        await recorder.close()
        await server.close()


async def _impostor(proof_for: str):
    """A listener that answers the handshake without knowing the secret; returns (address, task)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    loop = asyncio.get_running_loop()

    async def run() -> None:
        sock, _ = await loop.sock_accept(listener)
        async with Connection(sock, timeout=5.0) as conn:
            hello = await conn.recv()
            nonce = os.urandom(32)
            await conn.send(MessageType.AUTH_CHALLENGE, {"nonce": nonce.hex(), "name": "node", "protect": "integrity",
                                                          "mac": "hmac-sha256"})
            response = await conn.recv()
            if proof_for == "reflect":
                proof = response.header["proof"]  # send the client's own proof back as ours
            else:
                told = transcript("peer", "node", "integrity")
                proof = server_proof(b"guessed-secret-0123456789", told, bytes.fromhex(hello.header["nonce"]), nonce).hex()
            await conn.send(MessageType.AUTH_OK, {"proof": proof})
            await asyncio.sleep(0.2)
        listener.close()

    return listener.getsockname(), loop.create_task(run())


@pytest.mark.parametrize("proof_for", ["guess", "reflect"])
async def test_client_refuses_a_server_that_cannot_prove_the_secret(proof_for):
    address, task = await _impostor(proof_for)
    with pytest.raises(AuthError, match="server 127.0.0.1:.* failed to prove it holds the peer key of node"):
        await connect(*address, SECRET, timeout=5.0)
    await task


async def test_frames_before_the_handshake_are_refused_and_the_server_goes_on(echo_server, caplog):
    sock = socket.create_connection(echo_server.address)
    async with Connection(sock, timeout=5.0) as conn:
        with caplog.at_level(logging.WARNING, logger="nodes.wire.endpoints"):
            await conn.send(MessageType.FORWARD, {"step": 0})
            reply = await conn.recv()
    assert reply.type is MessageType.ERROR
    assert reply.header == {"reason": "expected HELLO during the handshake, got FORWARD"}
    assert "expected HELLO during the handshake, got FORWARD" in caplog.text
    await assert_serves(echo_server)

