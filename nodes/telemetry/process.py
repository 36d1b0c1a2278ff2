"""One process's CPU and memory read from /proc (the node agent, measured by the board's telemetry streamer)."""

from __future__ import annotations

import os
import time
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(pid: int | str = "self", proc: Path = Path("/proc")) -> int | None:
    """Resident memory of ``pid`` (this process by default) from /proc, or None where there is no /proc."""
    try:
        for line in (proc / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class ProcessWatch:
    """Reads the process named by a pid file, if it is alive and carries ``marker`` in its environment.

    The marker (``LITESRL_AGENT=<node>``, set by ``console.fleet.agent``) keeps a stale pid file whose
    pid was reused from being reported as the agent. CPU percent covers the time since the previous read.
    """

    def __init__(self, pid_file: Path, marker: str | None = None, proc: Path = Path("/proc")) -> None:
        self.pid_file, self.marker, self.proc = pid_file, marker, proc
        self._previous: tuple[int, float, float] | None = None  # pid, cpu seconds, monotonic time

    def read(self) -> dict | None:
        """``{"pid", "cpu_percent", "rss_bytes", "threads"}`` of the process, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().split()[0])
            root = self.proc / str(pid)
            if self.marker is not None and self.marker.encode() not in (root / "environ").read_bytes().split(b"\0"):
                return None
            # Fields after the command name (which may hold spaces) start at ")".
            fields = (root / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            self._previous = None
            return None
        cpu_seconds = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime
        now = time.monotonic()
        percent = 0.0
        if self._previous is not None and self._previous[0] == pid and now > self._previous[2]:
            percent = 100.0 * (cpu_seconds - self._previous[1]) / (now - self._previous[2])
        self._previous = (pid, cpu_seconds, now)
        return {"pid": pid, "cpu_percent": round(percent, 1), "rss_bytes": int(fields[21]) * _PAGE,
                "threads": int(fields[17])}
