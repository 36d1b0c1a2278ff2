"""An in-memory fleet backend for pure UI tests (snapshots, widgets): fixed nodes, readings the test pushes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from console.errors import ConsoleError
from console.fleet.ssh import LinkState, NodeStatus
from console.services.backend import AgentLoad, FleetBackend, NodeInfo, ProfileRequest, Reading, Update
from engine.cwb.profile_format import Profile
from nodes.telemetry.sample import Clocked, CpuCore, Memory, Rail, Sample, Swap, Temperature


def jetson_sample(load: float, gpu: float = 40.0, temp: float = 48.5, power: int = 5200) -> Sample:
    """A TX2-like reading: 6 cores (two off), GPU, EMC, engines, thermal zones and rails."""
    cores = tuple(CpuCore(True, load + i, 2035) for i in range(4)) + (CpuCore(False), CpuCore(False))
    return Sample(
        source="tegrastats",
        ram=Memory(3100, 7850), swap=Swap(0, 3925, 0),
        cpus=cores,
        emc=Clocked(True, 12.0, 1866),
        gpu=Clocked(True, gpu, 1300),
        engines={"APE": Clocked(True, None, 150), "NVENC": Clocked(False)},
        temperatures={"BCPU": Temperature(temp - 2), "GPU": Temperature(temp), "PMIC": Temperature(100.0),
                      "thermal": Temperature(temp - 1), "AO": Temperature(None)},
        rails={"VDD_IN": Rail(power, power - 300), "VDD_SYS_GPU": Rail(1500, 1400), "VDD_SYS_CPU": Rail(900, 880)},
    )


class ScriptedBackend(FleetBackend):
    """Nodes given up front; the test pushes updates with :meth:`push`."""

    def __init__(self, nodes: tuple[NodeInfo, ...], title: str = "scripted rack", fail: str | None = None) -> None:
        self.title = title
        self._nodes = nodes
        self._fail = fail
        self.queue: asyncio.Queue[Update] = asyncio.Queue()
        self.closed = False
        self.profiled: list[tuple[str, ProfileRequest]] = []
        self.profile_result: Callable[[], Profile] | None = None

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        return self._nodes

    @property
    def cluster_argument(self) -> str:
        return "scripted"

    async def start(self) -> None:
        if self._fail:
            raise ConsoleError(self._fail)

    def push(self, update: Update) -> None:
        self.queue.put_nowait(update)

    def push_reading(self, node: str, sample: Sample, agent: AgentLoad | None = None, age: float = 0.0) -> None:
        self.push(NodeStatus(node, LinkState.UP))
        self.push(Reading(node, sample, agent, time.monotonic() - age))

    async def updates(self, interval: float) -> AsyncIterator[Update]:
        while True:
            yield await self.queue.get()

    async def profile(self, node: str, request: ProfileRequest, on_line: Callable[[str], None]) -> Profile:
        self.profiled.append((node, request))
        if self.profile_result is None:
            raise ConsoleError(f"{node}: profiling failed (exit 1): scripted failure")
        return self.profile_result()

    async def close(self) -> None:
        self.closed = True
