"""A process named by its pid and start time, so that a pid the kernel has reused for another process is
never mistaken for the one recorded (the emulated cluster's agents and owner, a console's training run)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import psutil

from console.errors import ConsoleError

SAME_START = 0.5
"""Seconds two start times may differ and still name one process (psutil rounds them differently)."""


@dataclass(frozen=True)
class ProcessId:
    """A process as recorded: its pid and when it started."""

    pid: int
    """Process id."""
    created: float
    """Its start time (``psutil.Process.create_time``, seconds since the epoch)."""

    @classmethod
    def of(cls, pid: int) -> ProcessId:
        """The running process ``pid``; ConsoleError when there is none."""
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except psutil.Error:
            raise ConsoleError(f"no process {pid} is running") from None

    @classmethod
    def me(cls) -> ProcessId:
        """This process."""
        return cls.of(os.getpid())

    def alive(self) -> bool:
        """True while the recorded process runs (not a zombie, not a new process under the same pid)."""
        try:
            process = psutil.Process(self.pid)
            return abs(process.create_time() - self.created) < SAME_START and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def stop_group(process: ProcessId, grace: float = 10.0) -> str:
    """Stop ``process`` and its process group as Ctrl-C would (SIGINT: ``litesrl train`` then finishes the
    chains in flight and checkpoints), then SIGTERM and SIGKILL if it is still there after ``grace`` s each.

    Only a process that still matches the record is signalled; returns what happened, for people.
    """
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if not process.alive():
            return "not running" if sig == signal.SIGINT else "stopped"
        try:
            leader = os.getpgid(process.pid) == process.pid  # a run in a session of its own: its helpers go too
            (os.killpg if leader else os.kill)(process.pid, sig)
        except ProcessLookupError:
            return "stopped"
        deadline = time.monotonic() + (grace if sig != signal.SIGKILL else 5.0)
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    return "stopped" if not process.alive() else "still running after SIGKILL"
