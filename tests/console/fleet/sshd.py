"""A real OpenSSH sshd on a free loopback port, with its own host key, config and authorized client key."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


def find_sshd() -> str | None:
    """Path of the sshd binary, or None when OpenSSH server is not installed."""
    found = shutil.which("sshd")
    if found:
        return found
    return next((path for path in SSHD_CANDIDATES if os.access(path, os.X_OK)), None)


def generate_key(path: Path) -> asyncssh.SSHKey:
    """Write a new ed25519 private key to ``path`` (0600) and its public key to ``path.pub``."""
    key = asyncssh.generate_private_key("ssh-ed25519", comment="litesrl-test")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


@dataclass
class SSHServer:
    """A running test sshd."""

    host: str
    port: int
    user: str
    client_key: Path
    """Private key listed in the server's authorized_keys."""
    host_key: asyncssh.SSHKey
    """The server's host key (private; ``.export_public_key()`` for the public half)."""
    log_file: Path
    process: subprocess.Popen

    def known_hosts_line(self, key: asyncssh.SSHKey | None = None) -> str:
        """A known_hosts line for this server holding ``key`` (default: its real host key)."""
        public = (key or self.host_key).export_public_key("openssh").decode().split()[:2]
        return f"[{self.host}]:{self.port} {' '.join(public)}\n"

    def connection_pids(self) -> list[int]:
        """Pids of the per-connection sshd processes this server forked (children of the listener)."""
        import psutil

        return [child.pid for child in psutil.Process(self.process.pid).children()]

    def stop(self) -> None:
        """Terminate sshd and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_sshd(workdir: Path, sshd: str, user: str, extra_config: tuple[str, ...] = ()) -> SSHServer:
    """Start sshd in the foreground (``-D -e``) on a free loopback port, serving ``user``.

    ``extra_config`` lines are appended to its sshd_config (e.g. ``SetEnv`` for every session).

    As root, sshd needs its privilege-separation directory ``/run/sshd``. StrictModes is off
    because the test files live under /tmp, which is world-writable, and StrictModes refuses
    authorized_keys below such a directory.
    """
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)
    host_key_path = workdir / "ssh_host_ed25519_key"
    host_key = generate_key(host_key_path)
    client_key = workdir / "client_ed25519"
    generate_key(client_key)
    authorized = workdir / "authorized_keys"
    authorized.write_text(Path(str(client_key) + ".pub").read_text())
    authorized.chmod(0o600)
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        config = workdir / "sshd_config"
        config.write_text(
            "\n".join([
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key_path}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PermitRootLogin prohibit-password",
                "AllowTcpForwarding yes",
                "Subsystem sftp internal-sftp",
                "MaxStartups 100",
                "MaxSessions 100",
                "LogLevel VERBOSE",
                *extra_config,
                "",
            ])
        )
        log_file = workdir / "sshd.log"
        with open(log_file, "wb") as log:
            process = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=log,
                                       stdin=subprocess.DEVNULL)
        server = SSHServer("127.0.0.1", port, user, client_key, host_key, log_file, process)
        if _wait_for_banner(server):
            return server
        server.stop()
        tail = log_file.read_text(errors="replace").strip().splitlines()
        last_error = tail[-1] if tail else "no output"
    raise RuntimeError(f"sshd did not start: {last_error}")


def free_port() -> int:
    """A loopback port nobody listens on now (tests in parallel workers must not share fixed ports)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_banner(server: SSHServer, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection((server.host, server.port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            time.sleep(0.05)
    return False
