"""The console's settings: how often telemetry is read and when a silent node counts as stale."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleSettings:
    """Settings fixed when the console starts (command line > defaults)."""

    interval: float = 1.0
    """Seconds between telemetry readings of each node."""
    stale_after: float | None = None
    """Seconds without a reading after which an up node shows as stale (None: three intervals + 2 s)."""

    @property
    def stale_seconds(self) -> float:
        """The staleness threshold in effect."""
        return self.stale_after if self.stale_after is not None else 3 * self.interval + 2.0
