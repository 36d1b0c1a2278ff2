"""Real ``nodes.agent_main`` processes on loopback for tests, and small helpers to drive them."""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from console.cluster.local import AGENT_ENV, wait_listening
from engine.data.synthetic import generate

SECRET = b"test-cluster-secret-0123456789abcdef"
REPO = Path(__file__).resolve().parents[2]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it when the test process dies, even if pytest is killed."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(argv: list[str], name: str, output: Path) -> tuple[subprocess.Popen, Path]:
    """Start one agent process, output to ``output``; it cannot outlive the test run."""
    env = {**os.environ, AGENT_ENV: name, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with open(output, "wb") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=_die_with_parent)
    return process, output


@dataclass
class AgentProc:
    """One running agent."""

    name: str
    process: object
    host: str
    port: int
    log: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except Exception:
                self.process.kill()
                self.process.wait(10)


def write_secret(folder: Path) -> Path:
    path = folder / "cluster.secret"
    path.write_bytes(SECRET + b"\n")
    path.chmod(0o600)
    return path


def make_data(folder: Path, per_class: int = 4, size: int = 32) -> Path:
    """A synthetic optical dataset: 5 classes x ``per_class`` images."""
    return generate(folder, "optical", per_class=per_class, size=size, seed=1)


def start_agents(folder: Path, names: Sequence[str], *, memory: str = "3GB", data: Path | None = None,
                 emulate: dict | None = None, ports: Sequence[int] | None = None, extra: Sequence[str] = ()) -> list[AgentProc]:
    """Start one agent per name (in parallel) and wait until each listens."""
    folder.mkdir(parents=True, exist_ok=True)
    secret = folder / "cluster.secret"
    if not secret.exists():
        write_secret(folder)
    launched = []
    for index, name in enumerate(names):
        argv = [sys.executable, "-m", "nodes.agent_main", "--host", "127.0.0.1",
                "--port", str(ports[index] if ports else 0), "--secret-file", str(secret),
                "--log-file", str(folder / f"{name}.log"), "--name", name, "--memory-budget", memory,
                "--threads", "1", "--timeout", "10", "--verbose", *extra]
        if data is not None:
            argv += ["--data", str(data)]
        if emulate is not None:
            argv += ["--emulate", *[item for key, value in emulate.items() for item in (f"--{key}", str(value))]]
        process, out = spawn(argv, name, folder / f"{name}.out")
        launched.append((name, process, out, argv))
    agents = []
    try:
        for name, process, out, argv in launched:
            host, port = wait_listening(process, out, timeout=120)
            agents.append(AgentProc(name, process, host, port, folder / f"{name}.log", argv))
    except BaseException:
        for _, process, _, _ in launched:
            process.kill()
        raise
    return agents


def restart(agent: AgentProc, wait: bool = True) -> AgentProc:
    """Start ``agent`` again on its port (after a kill); wait until it listens unless ``wait`` is False.

    Call it from the main thread: the child dies with the thread that started it (PR_SET_PDEATHSIG),
    so wait in an executor with :func:`wait_ready` instead of starting it there.
    """
    argv = list(agent.argv)
    argv[argv.index("--port") + 1] = str(agent.port)
    process, _ = spawn(argv, agent.name, agent.log.with_suffix(".out2"))
    again = AgentProc(agent.name, process, agent.host, agent.port, agent.log, argv)
    if wait:
        wait_ready(again)
    return again


def wait_ready(agent: AgentProc) -> None:
    """Block until a restarted agent listens again."""
    wait_listening(agent.process, agent.log.with_suffix(".out2"), timeout=120)


def gone(pid: int) -> bool:
    """True when no live (non-zombie) process has ``pid``."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def links(agents: Sequence[AgentProc]) -> dict:
    """A control link per agent (``nodes.client.connect_node``)."""
    from nodes.client import connect_node

    opened = await asyncio.gather(*(connect_node(a.name, a.host, a.port, SECRET, 10.0) for a in agents))
    return {agent.name: link for agent, link in zip(agents, opened)}


def addresses(agents: Sequence[AgentProc]) -> dict[str, tuple[str, int]]:
    return {agent.name: (agent.host, agent.port) for agent in agents}


def log_text(agent: AgentProc) -> str:
    return agent.log.read_text(errors="replace") if agent.log.exists() else ""
