"""Training runs in progress on this machine: found by their ``litesrl train`` processes, read from their events.

Used by ``litesrl status`` and by the console, which follows a run started elsewhere (another
terminal, a script) as if it had launched it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from console.services.training_run import EVENTS
from console.services.training_state import TrainingState
from engine.dhp.events import EventError, EventTail

log = logging.getLogger(__name__)

DEFAULT_OUT = "runs/train"
"""``litesrl train``'s default run folder, relative to where it was started."""


@dataclass(frozen=True)
class RunningTraining:
    """A ``litesrl train`` process and where its events go."""

    pid: int
    """Process id of the coordinator."""
    cluster: str
    """Its ``--cluster`` (``local`` or an inventory path)."""
    events: Path
    """Its event stream (absolute)."""
    started: float
    """Process start time, seconds since the epoch."""


def train_arguments(argv: Sequence[str]) -> list[str] | None:
    """The options after ``train`` when ``argv`` is the process ``litesrl train`` itself.

    Matches ``litesrl train``, ``python .../litesrl train`` and ``python -m console.cli.main train``;
    wrappers that merely mention it (``timeout``, ``nohup``, a shell) are not the run.
    """
    if not argv:
        return None
    python = Path(argv[0]).name.startswith("python")
    for index, arg in enumerate(argv[:3]):
        launcher = (Path(arg).name == "litesrl" and (index == 0 or (index == 1 and python))) or \
            (python and index == 2 and arg == "console.cli.main" and argv[1] == "-m")
        if launcher and index + 1 < len(argv) and argv[index + 1] == "train":
            return list(argv[index + 2:])
    return None


def option(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``args`` (the last one wins), else None."""
    value = None
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            value = args[index + 1]
        elif arg.startswith(name + "="):
            value = arg.split("=", 1)[1]
    return value


def find_runs() -> list[RunningTraining]:
    """Every ``litesrl train`` running on this machine, oldest first."""
    runs = []
    for process in psutil.process_iter(["pid", "cmdline", "create_time"]):
        args = train_arguments(process.info["cmdline"] or ())
        if args is None or "-h" in args or "--help" in args:
            continue
        try:
            cwd = Path(process.cwd())
        except psutil.Error:
            continue
        out = cwd / (option(args, "--out") or DEFAULT_OUT)
        events = cwd / option(args, "--events") if option(args, "--events") else out / EVENTS
        runs.append(RunningTraining(process.info["pid"], option(args, "--cluster") or "local", events,
                                    process.info["create_time"]))
    return sorted(runs, key=lambda run: run.started)


def read_progress(run: RunningTraining) -> TrainingState:
    """The run's state so far, rebuilt from the events written until now (empty if there are none yet)."""
    state = TrainingState()
    try:
        for event in EventTail(run.events).poll():
            state.apply(event)
    except EventError as exc:
        log.warning("training pid %d: %s", run.pid, exc)
    return state
