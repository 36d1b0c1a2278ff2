"""Choosing a telemetry source: the best that works here, jtop, then tegrastats, psutil, /proc.

Kept apart from :mod:`nodes.telemetry.source` (the contract every source implements), which the sources
import for their base class: the chooser imports the sources, so neither needs a deferred import.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from nodes.errors import TelemetryError
from nodes.telemetry.jtop_source import JtopSource
from nodes.telemetry.proc_source import ProcSource
from nodes.telemetry.psutil_source import PsutilSource
from nodes.telemetry.source import DEFAULT_TEGRASTATS, TelemetrySource, validate_interval
from nodes.telemetry.tegrastats_source import TegrastatsSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Choice:
    """What `open_best_source` opened, and why each better source was passed over."""

    source: TelemetrySource
    """The open source, ready to stream."""
    skipped: tuple[tuple[str, str], ...]
    """(name, reason) of every better source that could not be opened, best first."""

    def describe(self) -> str:
        """One line for logs and the CLI, e.g. `psutil (jtop: not installed; tegrastats: not found)`."""
        if not self.skipped:
            return self.source.name
        reasons = "; ".join(f"{name}: {reason}" for name, reason in self.skipped)
        return f"{self.source.name} ({reasons})"


async def open_best_source(
    interval: float = 1.0,
    *,
    tegrastats_command: Sequence[str] = DEFAULT_TEGRASTATS,
    use_jtop: bool = True,
) -> Choice:
    """Open the best source that works here: jtop (its service answers), tegrastats, psutil, then /proc.

    ``tegrastats_command`` is the command line to run (``--interval`` is appended); ``use_jtop``
    False skips jtop, for callers that must not connect to the jtop service.
    Raises TelemetryError only when not even /proc can be read (not Linux, no psutil).
    """
    validate_interval(interval)
    openers = [
        ("jtop", lambda: JtopSource.open(interval)),
        ("tegrastats", lambda: TegrastatsSource.open(interval, command=tegrastats_command)),
        ("psutil", lambda: PsutilSource.open(interval)),
        ("proc", lambda: ProcSource.open(interval)),
    ]
    skipped: list[tuple[str, str]] = []
    for name, opener in openers if use_jtop else openers[1:]:
        try:
            choice = Choice(await opener(), tuple(skipped))
        except TelemetryError as exc:
            skipped.append((name, str(exc)))
            continue
        log.info("telemetry source: %s", choice.describe())
        return choice
    reasons = "; ".join(f"{name}: {reason}" for name, reason in skipped)
    raise TelemetryError(f"no telemetry source works here ({reasons})")
