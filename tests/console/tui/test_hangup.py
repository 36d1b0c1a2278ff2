"""Closing the terminal of `litesrl-console --local N` (SIGHUP) or SIGTERM stops the agents it started."""

from __future__ import annotations

import os
import pty
import select
import signal
import sys
import time

import pytest

from console.cluster.local import read_state
from tests.nodes.agent_procs import gone

pytestmark = pytest.mark.slow


def _drain(fd: int, screen: bytearray) -> None:
    """Read what the console draws, so it never blocks on a full terminal."""
    while select.select([fd], [], [], 0)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        screen.extend(data)


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_the_console_stops_the_cluster_it_started_when_its_terminal_goes(signum):
    pid, fd = pty.fork()
    if pid == 0:  # the console, on a terminal of its own
        os.execv(sys.executable, [sys.executable, "-m", "console.tui.launch", "--local", "1", "--time-scale", "0.1"])
    agents: list[int] = []
    screen = bytearray()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            _drain(fd, screen)
            state = read_state()
            if state is not None and all(agent.alive() for agent in state.agents) and b"emulated cluster (1" in screen:
                agents = [agent.pid for agent in state.agents]
                break
            time.sleep(0.2)
        assert agents, "the console did not bring the cluster up"
        os.kill(pid, signum)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            _drain(fd, screen)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 128 + signum
                break
            time.sleep(0.1)
        else:
            pytest.fail("the console did not exit after the signal")
        assert all(gone(agent) for agent in agents), "agents left running"
        assert read_state() is None
    finally:
        os.close(fd)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        for agent in agents:
            if not gone(agent):
                os.kill(agent, signal.SIGKILL)
