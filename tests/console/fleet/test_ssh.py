"""Connections against a real loopback sshd: host key checks, auth failures, timeouts, stale links."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace
from pathlib import Path

import asyncssh
import psutil
import pytest

from console.fleet.fleet import Fleet
from console.fleet.inventory import load_inventory
from console.fleet.ssh import LinkState, NodeUnavailable, open_ssh
from tests.console.fleet.sshd import generate_key

pytestmark = pytest.mark.ssh


async def test_connects_and_runs_a_command(sshd, trusted, make_inventory):
    inv = load_inventory(make_inventory())
    conn = await open_ssh(inv.nodes[0], inv.cluster)
    try:
        assert conn.status.state is LinkState.UP
        result = await conn.run("echo hello; echo oops >&2")
        assert (result.exit_status, result.stdout, result.stderr) == (0, "hello\n", "oops\n")
        failed = await conn.run("exit 7", check=False)
        assert failed.exit_status == 7
    finally:
        await conn.close()


async def test_failed_command_raises_with_its_stderr(sshd, trusted, make_inventory):
    inv = load_inventory(make_inventory())
    conn = await open_ssh(inv.nodes[0], inv.cluster)
    try:
        with pytest.raises(Exception, match=r"n1: command failed \(exit 3\): .*: boom"):
            await conn.run("echo boom >&2; exit 3")
    finally:
        await conn.close()


async def test_unknown_host_key_is_refused_with_how_to_trust(sshd, known_hosts, make_inventory):
    inv = load_inventory(make_inventory())
    assert not known_hosts.exists()
    with pytest.raises(NodeUnavailable) as caught:
        await open_ssh(inv.nodes[0], inv.cluster)
    status = caught.value.status
    assert status.state is LinkState.HOST_KEY_UNKNOWN
    assert sshd.host_key.get_fingerprint("sha256") in status.reason
    assert "litesrl nodes trust n1" in status.reason


async def test_changed_host_key_is_refused_as_mismatch(sshd, known_hosts, tmp_path, make_inventory):
    other = generate_key(tmp_path / "impostor")
    known_hosts.write_text(sshd.known_hosts_line(other))
    inv = load_inventory(make_inventory())
    with pytest.raises(NodeUnavailable) as caught:
        await open_ssh(inv.nodes[0], inv.cluster)
    status = caught.value.status
    assert status.state is LinkState.HOST_KEY_MISMATCH
    assert "CHANGED" in status.reason
    assert status.reason.count(other.get_fingerprint("sha256")) == 1
    assert sshd.host_key.get_fingerprint("sha256") in status.reason
    assert f"ssh-keygen -R '[127.0.0.1]:{sshd.port}'" in status.reason


async def test_key_not_in_authorized_keys_is_auth_failed(sshd, trusted, tmp_path, make_inventory):
    stranger = tmp_path / "stranger"
    generate_key(stranger)
    inv = load_inventory(make_inventory(identity=stranger))
    with pytest.raises(NodeUnavailable) as caught:
        await open_ssh(inv.nodes[0], inv.cluster)
    assert caught.value.status.state is LinkState.AUTH_FAILED
    assert str(stranger) in caught.value.status.reason


async def test_encrypted_or_garbled_keys_are_auth_failed_with_advice(sshd, trusted, tmp_path, make_inventory):
    # The authorized key itself, but locked with a passphrase litesrl does not have: only ssh-agent could use it.
    locked = tmp_path / "locked"
    asyncssh.read_private_key(str(sshd.client_key)).write_private_key(str(locked), "pkcs8-pem", passphrase="secret")
    inv = load_inventory(make_inventory(identity=locked))
    with pytest.raises(NodeUnavailable) as caught:
        await open_ssh(inv.nodes[0], inv.cluster)
    assert caught.value.status.state is LinkState.AUTH_FAILED
    assert "ssh-add" in caught.value.status.reason

    garbled = tmp_path / "garbled"
    garbled.write_text("not a key\n")
    inv = load_inventory(make_inventory(identity=garbled))
    with pytest.raises(NodeUnavailable, match="auth failed: cannot load .*garbled"):
        await open_ssh(inv.nodes[0], inv.cluster)


async def test_missing_identity_file_is_auth_failed(sshd, trusted, tmp_path, make_inventory):
    inv = load_inventory(make_inventory(identity=tmp_path / "nope"))
    with pytest.raises(NodeUnavailable, match="identity file .*nope does not exist"):
        await open_ssh(inv.nodes[0], inv.cluster)


async def test_closed_port_is_unreachable(sshd, trusted, make_inventory):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    inv = load_inventory(make_inventory())
    node = replace(inv.nodes[0], port=closed_port)
    with pytest.raises(NodeUnavailable) as caught:
        await open_ssh(node, inv.cluster)
    assert caught.value.status.state is LinkState.UNREACHABLE
    assert "refused" in caught.value.status.reason


async def test_silent_server_times_out(sshd, trusted, make_inventory):
    # A listener that accepts and never speaks SSH: the connect timeout must fire.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    inv = load_inventory(make_inventory())
    cluster = replace(inv.cluster, connect_timeout=0.5)
    node = replace(inv.nodes[0], port=port)
    started = time.monotonic()
    try:
        with pytest.raises(NodeUnavailable) as caught:
            await open_ssh(node, cluster)
    finally:
        server.close()
    assert caught.value.status.state is LinkState.TIMEOUT
    assert time.monotonic() - started < 5


async def test_lost_connection_turns_stale(sshd, trusted, make_inventory):
    inv = load_inventory(make_inventory(names=("n1", "n2")))
    async with Fleet(inv) as fleet:
        statuses = await fleet.connect()
        assert [s.state for s in statuses] == [LinkState.UP, LinkState.UP]
        conn = fleet.connection("n1")
        # Walk up from a remote shell to the per-connection sshd child serving n1, and kill it.
        serving = psutil.Process(int((await conn.run("echo $PPID")).stdout))
        while serving.ppid() != sshd.process.pid:
            serving = serving.parent()
        assert serving.pid in sshd.connection_pids()
        serving.kill()
        for _ in range(100):
            if fleet.status("n1").state is LinkState.STALE:
                break
            await asyncio.sleep(0.05)
        assert fleet.status("n1").state is LinkState.STALE
        assert fleet.status("n2").state is LinkState.UP
        with pytest.raises(NodeUnavailable):
            await conn.run("true")
        # connect() reconnects stale nodes.
        statuses = await fleet.connect()
        assert [s.state for s in statuses] == [LinkState.UP, LinkState.UP]


async def test_ssh_config_alias_connects(sshd, trusted, tmp_path):
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text(
        f"Host rack-a\n    HostName {sshd.host}\n    Port {sshd.port}\n    User {sshd.user}\n"
        f"    IdentityFile {sshd.client_key}\n"
    )
    inventory = tmp_path / "alias.toml"
    inventory.write_text(
        f'[cluster]\nknown_hosts = "{trusted}"\n'
        '[[nodes]]\nname = "a"\nhost = "rack-a"\nboard = "generic"\nmemory_budget = "1GB"\n'
    )
    inv = load_inventory(inventory)
    conn = await open_ssh(inv.nodes[0], inv.cluster)
    try:
        assert conn.target.address == f"{sshd.user}@{sshd.host}:{sshd.port}"
        assert (await conn.run("echo via-alias")).stdout == "via-alias\n"
    finally:
        await conn.close()


async def test_a_silent_node_turns_stale_by_keepalive(sshd, trusted, make_inventory):
    inv = load_inventory(make_inventory(cluster_extra="keepalive_interval = 0.3"))
    conn = await open_ssh(inv.nodes[0], inv.cluster)
    serving = psutil.Process(int((await conn.run("echo $PPID")).stdout))
    while serving.ppid() != sshd.process.pid:
        serving = serving.parent()
    # A frozen sshd still has its TCP connection open; only the unanswered keepalives reveal it.
    serving.suspend()
    try:
        for _ in range(100):
            if conn.status.state is LinkState.STALE:
                break
            await asyncio.sleep(0.05)
        assert conn.status.state is LinkState.STALE
        assert "keepalive" in conn.status.reason.lower()
    finally:
        serving.kill()
        await conn.close()
