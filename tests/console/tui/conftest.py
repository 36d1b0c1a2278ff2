"""Fixtures for the console tests: a real emulated cluster (real agent processes), screen text, scripted nodes,
stand-ins for what a console that died leaves running."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from console.process_id import ProcessId
from console.services.backend import NodeInfo
from console.services.training_run import EVENTS, OUTPUT
from tests.conftest import REPO_ROOT
from tests.console.fleet.conftest import _no_ssh_agent, known_hosts, make_inventory, sshd, trusted  # noqa: F401  (fixtures)

CLUSTER_NODES = 3
"""Agents of the shared emulated cluster (each imports torch: more would make the suite slow)."""


def screen_text(app) -> str:
    """The app's current screen as plain text, what an operator would read."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, force_terminal=True,
                      color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for(pilot, condition, timeout: float = 30.0, step: float = 0.1) -> None:
    """Let the app run until ``condition()`` holds; fail with the screen's text after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s; screen:\n{screen_text(pilot.app)}")
        await pilot.pause(step)


@pytest.fixture
def tx2_nodes() -> tuple[NodeInfo, ...]:
    """Six TX2-like nodes with the paper's 3 GB budget, for scripted (pure UI) tests."""
    return tuple(NodeInfo(f"tx2-{i}", "tx2", f"nvidia@10.0.0.{10 + i}:22", 3 * 10**9) for i in range(1, 7))


@pytest.fixture(scope="session")
def _emulated_cluster(tmp_path_factory) -> Iterator[Path]:
    """A real emulated cluster (``console.cluster.local.up``) of :data:`CLUSTER_NODES` agents for the session.

    Its state file, secret and agent logs live in a home of its own, returned.
    """
    from console.cluster.local import down, up

    _cluster_home = tmp_path_factory.mktemp("cluster-home")
    env = {"HOME": str(_cluster_home), "XDG_CONFIG_HOME": str(_cluster_home / ".config"),
           "XDG_STATE_HOME": str(_cluster_home / ".local" / "state")}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("LITESRL_SECRET", raising=False)
        up(CLUSTER_NODES, time_scale=0.05, memory_per_node="1.5GB", memory_accounting="exact")
        try:
            yield _cluster_home
        finally:
            down()


@pytest.fixture
def cluster(_emulated_cluster, monkeypatch) -> Path:
    """Point this test's environment at the shared emulated cluster (its state file and secret)."""
    home = _emulated_cluster
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    return home


@pytest.fixture
def processes():
    """Start processes (``sleep 60`` unless told), each in a session of its own as agents and runs are; all
    killed and reaped after the test."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str] | None = None, **options) -> subprocess.Popen:
        # Ctrl-C's signal as a shell gives it: a pytest-xdist worker ignores SIGINT, and children inherit that.
        process = subprocess.Popen(argv or ["sleep", "60"], start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **options)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def dead(processes) -> ProcessId:
    """A process that ran and is gone: a console that was killed."""
    process = processes()
    ident = ProcessId.of(process.pid)
    process.kill()
    process.wait()
    return ident


def start_stand_in(processes, folder: Path, iterations: int = 3) -> subprocess.Popen:
    """A stand-in ``litesrl train`` writing into ``folder`` as a console launches it (output to files)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / OUTPUT[0], "wb") as out, open(folder / OUTPUT[1], "wb") as err:
        process = processes([sys.executable, "-m", "tests.console.tui.stand_in_train", str(folder / EVENTS),
                             str(iterations)], stdout=out, stderr=err, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    return process


@pytest.fixture
def node_venv(tmp_path) -> Path:
    """The test node's "venv": this interpreter running this checkout (an SSH session has no PYTHONPATH of ours)."""
    venv = tmp_path / "node-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nPYTHONPATH={REPO_ROOT} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return venv
