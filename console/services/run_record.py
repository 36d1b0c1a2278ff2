"""``process.json`` in a console-launched run folder: which ``litesrl train`` process trains into it and which
console follows it, so that a run outliving its console (killed, crashed) is found and reattached or stopped."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from console.process_id import ProcessId
from engine.io import atomic_write_json

log = logging.getLogger(__name__)

RECORD = "process.json"
"""Name of the record in a run folder."""


@dataclass(frozen=True)
class RunRecord:
    """A training run's processes, as the console that launched (or reattached) it wrote them."""

    process: ProcessId
    """The ``litesrl train`` process (also its process group: it runs in a session of its own)."""
    console: ProcessId
    """The console following the run; the run is an orphan while ``process`` lives and this does not."""
    argv: tuple[str, ...]
    """The command line of ``process``."""
    started: float = field(default_factory=time.time)
    """When the run was launched (seconds since the epoch)."""

    def write(self, folder: Path) -> None:
        """Write (atomically: a crash never leaves half a record) into the run folder ``folder``."""
        atomic_write_json(folder / RECORD, asdict(self))

    def followed_by(self, console: ProcessId) -> RunRecord:
        """The record once ``console`` follows the run instead."""
        return replace(self, console=console)

    @classmethod
    def read(cls, folder: Path) -> RunRecord | None:
        """The record in ``folder``; None when there is none, or it is unreadable (logged)."""
        path = folder / RECORD
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(ProcessId(**data["process"]), ProcessId(**data["console"]), tuple(data["argv"]),
                       float(data["started"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s: %s", path, exc)
            return None
