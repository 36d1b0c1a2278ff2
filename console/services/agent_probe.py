"""Telemetry of agent processes on this machine (the emulated cluster): psutil on each pid plus one host sample."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from console.fleet.ssh import LinkState, NodeStatus
from console.services.backend import AgentLoad, Reading
from nodes.telemetry.psutil_source import PsutilSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalAgent:
    """An agent process of the emulated cluster."""

    name: str
    """Node name."""
    pid: int
    """Process id."""
    port: int
    """TCP port it serves on loopback."""
    board: str = "emulated"
    """Board it emulates, for people."""
    memory_budget: int = 3 * 10**9
    """Bytes of memory its stage may use."""
    speed: float = 1.0
    """Compute speed relative to the profiled board."""


class AgentProbe:
    """Reads every agent at once: one psutil host sample shared by all, per-process CPU and memory.

    CPU percentages cover the time since the previous :meth:`read` (the first read primes them).
    """

    def __init__(self, host: PsutilSource) -> None:
        self.host = host
        self._processes: dict[int, psutil.Process] = {}

    @classmethod
    async def open(cls, interval: float) -> AgentProbe:
        """A probe whose host sampling covers ``interval``-second periods."""
        return cls(await PsutilSource.open(interval))

    def read(self, agents: Sequence[LocalAgent]) -> list[Reading | NodeStatus]:
        """One reading per live agent; a dead or vanished agent becomes an unreachable status."""
        sample = self.host.read()
        now = time.monotonic()
        out: list[Reading | NodeStatus] = []
        for agent in agents:
            process = self._process(agent.pid)
            try:
                if process is None or process.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(agent.pid)
                with process.oneshot():
                    load = AgentLoad(agent.pid, process.cpu_percent(), process.memory_info().rss, process.num_threads())
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                self._processes.pop(agent.pid, None)
                out.append(NodeStatus(agent.name, LinkState.UNREACHABLE,
                                      f"agent process {agent.pid} is gone (litesrl cluster up restarts the cluster)"))
                continue
            out.append(Reading(agent.name, sample, load, now))
        return out

    def _process(self, pid: int) -> psutil.Process | None:
        # Process objects are kept: cpu_percent() measures from the previous call on the same object.
        process = self._processes.get(pid)
        if process is None:
            try:
                process = self._processes[pid] = psutil.Process(pid)
                process.cpu_percent()
            except psutil.NoSuchProcess:
                return None
        return process

    async def close(self) -> None:
        """Release the host source."""
        await self.host.close()
