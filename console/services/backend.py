"""The fleet backend contract the console's screens use: nodes, their link states, telemetry, profiling.

Two implementations: :class:`console.services.backend_ssh.SSHBackend` (Jetson boards of an inventory,
over asyncssh) and :class:`console.services.backend_local.LocalBackend` (the emulated cluster's agent
processes on this machine). The app starts a backend in a worker, reads :meth:`FleetBackend.updates`
there and turns each item into a typed message; screens never touch a backend directly.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

from console.fleet.ssh import NodeStatus
from engine.cwb.profile_format import Profile
from nodes.telemetry.sample import Sample


@dataclass(frozen=True)
class NodeInfo:
    """What the console knows about a node before any telemetry: its identity and its budget."""

    name: str
    """Node name (inventory name, or the emulated agent's name)."""
    board: str
    """Board model as the inventory or the emulated cluster declares it."""
    address: str
    """Where the console reaches it, for people: ``user@host:port`` or ``127.0.0.1:7701 (pid 4242)``."""
    memory_budget: int
    """Bytes of memory CWB may plan on the node."""
    speed: float = 1.0
    """Compute speed relative to the profiled board (the emulated agents' speed factor; 1 for real boards)."""


@dataclass(frozen=True)
class AgentLoad:
    """The node agent process itself, as measured on the machine it runs on (a board, or this host when emulated)."""

    pid: int
    """Process id of the agent."""
    cpu_percent: float
    """CPU time used since the previous reading, in percent of one core (may exceed 100 with threads)."""
    rss_bytes: int
    """Resident memory of the agent."""
    threads: int
    """Threads the agent runs."""


@dataclass(frozen=True)
class Reading:
    """One telemetry reading of one node."""

    node: str
    """Node name."""
    sample: Sample
    """The machine the node runs on: the board (SSH) or this host (emulated cluster)."""
    agent: AgentLoad | None = None
    """The agent process, when it runs (measured on its machine: the board, or this host when emulated)."""
    received: float = 0.0
    """``time.monotonic()`` when the console received it (staleness is judged from this)."""


Update = NodeStatus | Reading
"""What :meth:`FleetBackend.updates` yields: a node's link state changed, or a reading arrived."""


@dataclass(frozen=True)
class ProfileRequest:
    """Settings of one CWB profiling run (``litesrl profile``); defaults are small enough for a CPU."""

    backbone: str = "resnet18"
    """Encoder backbone: resnet18, resnet34 or resnet50."""
    batch_size: int = 8
    """Images per mini-batch (the paper used 64 on a TX2)."""
    image_size: int = 64
    """Side of each view in pixels (the paper used 224)."""
    repeats: int = 2
    """Timed runs per unit; the median is kept."""
    warmup: int = 1
    """Untimed runs per unit before timing."""
    threads: int | None = 1
    """CPU threads torch may use on the node (None: all its cores)."""
    extra: tuple[str, ...] = field(default=())
    """Further ``litesrl profile`` options, passed as given."""

    def options(self) -> list[str]:
        """The ``litesrl profile`` command-line options for these settings (``--out`` not included)."""
        argv = ["--backbone", self.backbone, "--batch-size", str(self.batch_size), "--image-size",
                str(self.image_size), "--repeats", str(self.repeats), "--warmup", str(self.warmup), "--json"]
        if self.threads is not None:
            argv += ["--threads", str(self.threads)]
        return argv + list(self.extra)


class FleetBackend(abc.ABC):
    """A set of nodes the console watches and drives."""

    title: str
    """One line naming the cluster, shown in the console's top bar."""

    @property
    @abc.abstractmethod
    def nodes(self) -> tuple[NodeInfo, ...]:
        """The nodes, in the order the operator listed them; empty until :meth:`start` returned."""

    @property
    def memory_accounting(self) -> str | None:
        """How the cluster's memory budgets are meant (``exact`` or ``paper``), None when it does not say."""
        return None

    @property
    @abc.abstractmethod
    def cluster_argument(self) -> str:
        """What ``litesrl train --cluster`` takes to train on these nodes (``local`` or an inventory path)."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Get ready: read the inventory or cluster state (starting the emulated cluster if asked).

        Raises :class:`console.errors.ConsoleError` with a one-line reason when that is impossible.
        """

    @abc.abstractmethod
    def updates(self, interval: float) -> AsyncIterator[Update]:
        """Yield node states and readings (about one per node per ``interval`` seconds) until cancelled.

        Never raises for a node that fails: the failure is yielded as that node's :class:`NodeStatus`
        and the backend keeps retrying it.
        """

    @abc.abstractmethod
    async def profile(self, node: str, request: ProfileRequest, on_line: Callable[[str], None]) -> Profile:
        """Run CWB profiling on ``node`` and return the profile; ``on_line`` gets its progress output.

        Raises :class:`console.errors.ConsoleError` (or a subclass) saying why profiling failed.
        """

    def measured_profiles(self) -> dict[str, Path]:
        """The profile file kept for each node profiled so far (newest first); none by default."""
        return {}

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections and processes this backend opened (idempotent)."""
