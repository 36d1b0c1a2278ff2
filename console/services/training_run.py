"""A DHP training run followed by the console: ``litesrl train`` as a child process, or one an earlier console
left running (reattached), its events file followed.

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
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from console.errors import ConsoleError
from console.process_id import ProcessId, stop_group
from console.services.run_record import RECORD, RunRecord
from engine.dhp.defaults import AVERAGE_EVERY
from engine.dhp.events import Event, EventError, EventTail
from engine.io import LineTail

log = logging.getLogger(__name__)

POLL_SECONDS = 0.1
"""How often the events file is checked for new lines."""

EVENTS = "events.jsonl"
"""Name of the event stream in a run folder (what ``litesrl train`` writes by default)."""
OUTPUT = ("stdout.log", "stderr.log")
"""Where a run launched by the console writes its standard output and error, in its run folder."""


@dataclass(frozen=True)
class TrainRequest:
    """What the operator asked for in the training dialog (the options of ``litesrl train``)."""

    mode: Literal["fixed", "dynamic"] = "dynamic"
    """Fixed chains (paper Fig. 4a) or dynamic chains (Fig. 4b)."""
    policy: Literal["first-free", "earliest-finish"] = "first-free"
    """Next-hop policy of dynamic chains: the paper's first free node, or SWARM-style earliest finish."""
    iterations: int = 60
    """Mini-batches to train."""
    average_every: int = AVERAGE_EVERY
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
    """Remove the run folder of a training that failed before it trained (an empty event stream, beside only
    its output and process record), so failed starts leave no folders behind; True when removed. The output
    was shown in the console's log already."""
    try:
        entries = list(out.iterdir())
    except FileNotFoundError:
        return False
    if any(entry.name not in (EVENTS, *OUTPUT, RECORD) or (entry.name == EVENTS and entry.stat().st_size > 0)
           for entry in entries):
        return False
    for entry in entries:
        entry.unlink()
    out.rmdir()
    return True


def new_text(tail: LineTail, final: bool = False) -> list[str]:
    """The non-empty lines ``tail`` completed since its last poll, as text."""
    return [text for raw in tail.poll(final) if (text := raw.decode("utf-8", "replace").rstrip())]


class _Run:
    """What a followed run has, launched here or reattached: its events, its output files, a way to stop it."""

    def __init__(self, events: Path, on_output: Callable[[str], None]) -> None:
        self.events = events
        self.on_output = on_output
        self.last_error = ""
        """The run's latest ``error: ...`` line, else its latest line of error output."""
        self._stdout = LineTail(events.parent / OUTPUT[0])
        self._stderr = LineTail(events.parent / OUTPUT[1])

    @property
    def running(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    async def _pause(self) -> None:
        """Wait up to POLL_SECONDS, less when the run ends meanwhile."""
        await asyncio.sleep(POLL_SECONDS)

    def _drain_output(self, final: bool = False) -> None:
        for line in new_text(self._stdout, final):
            self.on_output(line)
        for line in new_text(self._stderr, final):
            if line.startswith("error:") or not self.last_error.startswith("error:"):
                self.last_error = line
            self.on_output(line)

    async def follow(self) -> AsyncIterator[list[Event]]:
        """Yield the events written since the last yield (all of them first), until the run ended and the
        file is drained; its output lines go to ``on_output`` meanwhile."""
        tail = EventTail(self.events)
        while True:
            ended = not self.running
            try:
                events = tail.poll()
            except EventError as exc:
                raise ConsoleError(f"training events unreadable: {exc}") from None
            self._drain_output(final=ended)
            if events:
                yield events
            if ended:
                return
            await self._pause()


class TrainingRun(_Run):
    """One ``litesrl train`` child process and its events file.

    Its output goes to files in the run folder, not to pipes: a run left behind by a console that was
    killed would die of a broken pipe at its next line.
    """

    def __init__(self, argv: list[str], events: Path, on_output: Callable[[str], None]) -> None:
        super().__init__(events, on_output)
        self.argv = argv
        self._process: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        """True while the child process lives."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The child's pid (also its process group: it runs in a session of its own), once started."""
        return None if self._process is None else self._process.pid

    async def start(self) -> None:
        """Start the child and record it in the run folder (``process.json``); ConsoleError when it cannot start."""
        folder = self.events.parent
        folder.mkdir(parents=True, exist_ok=True)
        log.info("starting training: %s", " ".join(self.argv))
        try:
            with open(folder / OUTPUT[0], "wb") as out, open(folder / OUTPUT[1], "wb") as err:
                self._process = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        except OSError as exc:
            raise ConsoleError(f"cannot start training: {exc}") from None
        try:
            RunRecord(ProcessId.of(self._process.pid), ProcessId.me(), tuple(self.argv)).write(folder)
        except (ConsoleError, OSError) as exc:  # exited at once, or the folder is unwritable: it is not left behind
            log.warning("training pid %d not recorded: %s", self._process.pid, exc)

    async def _pause(self) -> None:
        assert self._process is not None, "start() first"
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._process.wait()), POLL_SECONDS)

    async def wait(self) -> int:
        """Wait for the child to exit (and its output to be read); returns its exit status."""
        assert self._process is not None
        code = await self._process.wait()
        self._drain_output(final=True)
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


class AttachedRun(_Run):
    """A ``litesrl train`` this console did not start (an earlier console's, left running when it died),
    followed by its recorded process and its run folder. There is no exit status for a process that is not
    our child: :meth:`wait` reads how it ended from its events."""

    def __init__(self, record: RunRecord, events: Path, on_output: Callable[[str], None]) -> None:
        super().__init__(events, on_output)
        self.record = record

    @property
    def running(self) -> bool:
        """True while the recorded process lives (a reused pid is not it)."""
        return self.record.process.alive()

    @property
    def pid(self) -> int | None:
        """The run's pid (also its process group)."""
        return self.record.process.pid

    async def wait(self) -> int | None:
        """Wait until the process is gone; 0 when its events end with a completed run, 1 when the run stopped
        early (the ``run_finished`` reason becomes :attr:`last_error`), None without a ``run_finished`` event
        (killed, or crashed)."""
        while self.running:
            await asyncio.sleep(POLL_SECONDS)
        self._drain_output(final=True)
        try:
            finished = [event for event in EventTail(self.events).poll() if event.TYPE == "run_finished"]
        except EventError as exc:
            log.warning("training pid %d: %s", self.record.process.pid, exc)
            return None
        if not finished:
            return None
        if finished[-1].reason:
            self.last_error = f"stopped early: {finished[-1].reason}"
            return 1
        return 0

    async def stop(self, grace: float = 10.0) -> None:
        """Interrupt the run as Ctrl-C would, then SIGTERM and SIGKILL (its whole process group)."""
        outcome = await asyncio.to_thread(stop_group, self.record.process, grace)
        log.info("training pid %d: %s", self.record.process.pid, outcome)
