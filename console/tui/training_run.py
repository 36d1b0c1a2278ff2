"""A DHP training run launched from the console: ``litesrl train`` as a child process, its events file followed.

The coordinator runs in its own process (torch never enters the console); the console reads the
JSON-lines event stream the coordinator writes (``engine.dhp.events``) as it grows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Callable, Literal

from console.errors import ConsoleError
from engine.dhp.events import Event, EventError, EventTail

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""How often the events file is checked for new lines."""

EVENTS = "events.jsonl"
"""Name of the event stream in a run folder (what ``litesrl train`` writes by default)."""


@dataclass(frozen=True)
class TrainRequest:
    """What the operator asked for in the training dialog (the options of ``litesrl train``)."""

    mode: Literal["fixed", "dynamic"] = "dynamic"
    """Fixed chains (paper Fig. 4a) or dynamic chains (Fig. 4b)."""
    policy: Literal["first-free", "earliest-finish"] = "first-free"
    """Next-hop policy of dynamic chains: the paper's first free node, or SWARM-style earliest finish."""
    iterations: int = 60
    """Mini-batches to train."""
    average_every: int = 20
    """Average the replicas of each stage every this many iterations (paper: 100)."""
    profile: str | None = None
    """CWB profile: a profile file (measured on a board, or any) or a reference board name; None: the
    cluster's default (the emulated board's, else the newest measured on the boards)."""
    cut_after: tuple[str, ...] = ()
    """Layers to cut after (a plan picked on the partition screen); empty: CWB's best-E cut."""
    replicas: tuple[int, ...] = ()
    """Nodes per stage of dynamic chains (a picked plan); empty: the analytic best."""
    memory_accounting: str | None = None
    """``exact`` or ``paper`` (None: the cluster's)."""

    def argv(self, cluster: str, out: Path) -> list[str]:
        """The command line that trains on ``cluster`` into the run folder ``out`` (events: ``out/events.jsonl``)."""
        argv = [sys.executable, "-m", "console.cli.main", "train", "--cluster", cluster, "--mode", self.mode,
                "--policy", self.policy, "--iterations", str(self.iterations),
                "--average-every", str(self.average_every), "--out", str(out), "--events", str(out / EVENTS)]
        if self.profile:
            argv += ["--profile", self.profile]
        if self.cut_after:
            argv += ["--cut-after", ",".join(self.cut_after)]
        if self.replicas and self.mode == "dynamic":
            argv += ["--replicas", "/".join(map(str, self.replicas))]
        if self.memory_accounting:
            argv += ["--memory-accounting", self.memory_accounting]
        return argv


def runs_dir() -> Path:
    """``$XDG_STATE_HOME/litesrl/runs``: run folders (checkpoint, events) of the trainings the console launched."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "litesrl" / "runs"


def discard_empty_run(out: Path) -> bool:
    """Remove the run folder of a training that failed before it trained (nothing but an empty event
    stream in it), so failed starts leave no empty folders behind; True when removed."""
    try:
        entries = list(out.iterdir())
    except FileNotFoundError:
        return False
    if any(entry.name != EVENTS or entry.stat().st_size > 0 for entry in entries):
        return False
    for entry in entries:
        entry.unlink()
    out.rmdir()
    return True


class TrainingRun:
    """One ``litesrl train`` child process and its events file."""

    def __init__(self, argv: list[str], events: Path, on_output: Callable[[str], None]) -> None:
        self.argv = argv
        self.events = events
        self.on_output = on_output
        self.last_error = ""
        """The child's latest ``error: ...`` line, else its latest line of error output."""
        self._process: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task] = []

    @property
    def running(self) -> bool:
        """True while the child process lives."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group: it runs in a session of its own), once started."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the child; raises ConsoleError when it cannot be started."""
        self.events.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting training: %s", " ".join(self.argv))
        try:
            self._process = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise ConsoleError(f"cannot start training: {exc}") from None
        self._readers = [asyncio.create_task(self._read(self._process.stdout, False)),
                         asyncio.create_task(self._read(self._process.stderr, True))]

    async def _read(self, stream: asyncio.StreamReader | None, errors: bool) -> None:
        assert stream is not None
        async for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            if errors and (line.startswith("error:") or not self.last_error.startswith("error:")):
                self.last_error = line
            self.on_output(line)

    async def follow(self) -> AsyncIterator[list[Event]]:
        """Yield the events written since the last yield, until the child exited and the file is drained."""
        assert self._process is not None, "start() first"
        tail = EventTail(self.events)
        while True:
            exited = self._process.returncode is not None
            try:
                events = tail.poll()
            except EventError as exc:
                raise ConsoleError(f"training events unreadable: {exc}") from None
            if events:
                yield events
            if exited:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._process.wait()), POLL_SECONDS)

    async def wait(self) -> int:
        """Wait for the child to exit (and its output to be read); returns its exit status."""
        assert self._process is not None
        code = await self._process.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return code

    async def stop(self, grace: float = 10.0) -> None:
        """Interrupt the run (SIGINT, as Ctrl-C would), then SIGTERM and SIGKILL if it does not end in ``grace`` s."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        deadline = time.monotonic() + grace
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                await asyncio.wait_for(process.wait(), max(0.5, deadline - time.monotonic()) if sig != signal.SIGKILL else 5.0)
                return
            except asyncio.TimeoutError:
                log.warning("training pid %d ignored %s", process.pid, sig.name)
                deadline = time.monotonic() + grace / 2
