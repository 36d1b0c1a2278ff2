"""Fixtures for the SSH fleet tests: a real loopback sshd and inventories that point at it."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.console.fleet.sshd import SSHServer, find_sshd, free_port, start_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Iterator[SSHServer]:
    """A real OpenSSH sshd on loopback for the whole session; skips when no sshd is installed."""
    binary = find_sshd()
    if binary is None:
        pytest.skip("no OpenSSH sshd binary: install openssh-server (.ci/run does) to run the SSH tests")
    server = start_sshd(tmp_path_factory.mktemp("sshd"), binary, getpass.getuser())
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_ssh_agent(monkeypatch):
    """Keep the developer's ssh-agent out of the tests: only the keys an inventory names are offered."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)


@pytest.fixture
def known_hosts(tmp_path) -> Path:
    """Path of the known_hosts file the test inventories use (absent until a test writes it)."""
    return tmp_path / "known_hosts"


@pytest.fixture
def trusted(sshd, known_hosts) -> Path:
    """known_hosts holding the test sshd's real host key."""
    known_hosts.write_text(sshd.known_hosts_line())
    return known_hosts


@pytest.fixture
def make_inventory(tmp_path, sshd, known_hosts) -> Callable[..., Path]:
    """Build an inventory of nodes served by the test sshd; returns its path.

    ``make_inventory(names=("n1",), identity=None, node_extra="", cluster_extra="")``: every node is
    this machine, with its own workdir under tmp_path and this interpreter as its Python.
    """

    def build(names=("n1",), identity: Path | None = None, node_extra: str = "", cluster_extra: str = "") -> Path:
        lines = [
            "[cluster]",
            'name = "test"',
            f'known_hosts = "{known_hosts}"',
            f'identity_file = "{identity or sshd.client_key}"',
            f'secret_file = "{tmp_path / "cluster.secret"}"',
            "connect_timeout = 10",
            cluster_extra,
        ]
        for name in names:
            lines += [
                "[[nodes]]",
                f'name = "{name}"',
                f'host = "{sshd.host}"',
                f"port = {sshd.port}",
                f'user = "{sshd.user}"',
                'board = "generic"',
                'memory_budget = "1GB"',
                f'python = "{sys.executable}"',
                f'workdir = "{tmp_path / ("node-" + name)}"',
                f"agent_port = {free_port()}",  # not a fixed one: a parallel test's agent may hold it
                node_extra,
            ]
        path = tmp_path / "inventory.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    return build
