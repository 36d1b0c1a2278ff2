"""Console speed: start to first frame, and the CPU the console spends watching six nodes at 1 Hz.

One command: ``.venv/bin/python benchmarks/console_perf.py``. Targets (issue 5): first frame within
1.5 s; six nodes at 1 Hz cost at most 5 % of one core in the console process.

The console runs as a real process in a pseudo-terminal (120 x 36), on the emulated cluster: the
running one, or six agents this script starts (``litesrl cluster up``) and stops afterwards.
*First frame* is the wall time from spawning ``python -m console.tui.launch`` (interpreter start and
imports included) to the first bytes that draw the top bar; the median of a few starts is kept.
*CPU* is the console process's user + system time (psutil) over a window of ``--seconds`` on the
fleet screen after the telemetry settled, in percent of one core. Prints the figures and appends
them to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from report import machine  # noqa: E402  (benchmarks/report.py: one description of the machine)

from console.cluster.local import read_state  # noqa: E402
from engine.io import atomic_write_text  # noqa: E402

NODES = 6
SIZE = (36, 120)  # rows, columns
FIRST_FRAME_TARGET_S = 1.5
CPU_TARGET_PCT = 5.0
MARKER = b"Partition"
"""Text of the top bar, drawn in the first frame."""


class Console:
    """``litesrl-console`` in a pseudo-terminal."""

    def __init__(self, args: list[str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", SIZE[0], SIZE[1], 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(SIZE[1]), "LINES": str(SIZE[0])}
        self.started = time.perf_counter()
        self.process = subprocess.Popen([sys.executable, "-m", "console.tui.launch", *args], stdin=slave,
                                        stdout=slave, stderr=slave, cwd=REPO, env=env, start_new_session=True)
        os.close(slave)
        self.output = bytearray()

    def read_until(self, marker: bytes, timeout: float) -> float:
        """Seconds from spawn until ``marker`` appeared on the terminal; RuntimeError after ``timeout``."""
        deadline = self.started + timeout
        while marker not in self.output:
            self.pump(max(0.0, min(0.05, deadline - time.perf_counter())))
            if time.perf_counter() > deadline:
                tail = self.output[-400:].decode("utf-8", "replace")
                raise RuntimeError(f"no {marker!r} on the console's terminal within {timeout} s: ...{tail!r}")
        return time.perf_counter() - self.started

    def pump(self, wait: float) -> None:
        """Read what the console wrote (the terminal must be drained or the console blocks)."""
        ready, _, _ = select.select([self.master], [], [], wait)
        if ready:
            try:
                self.output += os.read(self.master, 65536)
            except OSError:
                pass

    def idle(self, seconds: float) -> None:
        """Keep draining the terminal for ``seconds``."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            self.pump(0.05)

    def cpu_seconds(self) -> float:
        """User + system CPU time of the console process so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def quit(self) -> None:
        """Press q and wait for the console to exit (SIGTERM after 10 s)."""
        os.write(self.master, b"q")
        end = time.perf_counter() + 10
        while self.process.poll() is None and time.perf_counter() < end:
            self.pump(0.05)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(5)
        os.close(self.master)


def first_frame(runs: int) -> list[float]:
    """Seconds to the first frame, per run."""
    times = []
    for _ in range(runs):
        console = Console([])
        try:
            times.append(console.read_until(MARKER, 30))
        finally:
            console.quit()
    return times


def telemetry_cpu(seconds: float) -> tuple[float, float]:
    """(percent of one core, readings drawn per second) of the console on the fleet screen."""
    console = Console(["--interval", "1"])
    try:
        console.read_until(MARKER, 30)
        console.read_until(b"node-6", 60)
        console.idle(5)  # every node reporting, history filling
        before, start = console.cpu_seconds(), time.perf_counter()
        console.idle(seconds)
        used, elapsed = console.cpu_seconds() - before, time.perf_counter() - start
    finally:
        console.quit()
    return 100.0 * used / elapsed, NODES / 1.0


def ensure_cluster() -> bool:
    """Start six emulated agents unless a cluster is up; True when this script started them."""
    state = read_state()
    if state is not None and all(agent.alive() for agent in state.agents):
        if len(state.agents) != NODES:
            raise SystemExit(f"a cluster of {len(state.agents)} nodes is up; this benchmark needs {NODES}")
        return False
    subprocess.run([sys.executable, "-m", "console.cli.main", "cluster", "up", "--nodes", str(NODES)],
                   cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="CPU measurement window (default 30 s).")
    parser.add_argument("--starts", type=int, default=5, help="Starts timed for the first frame (default 5).")
    parser.add_argument("--no-record", action="store_true", help="Do not append to BENCHMARKS.md.")
    args = parser.parse_args()
    started_cluster = ensure_cluster()
    load = os.getloadavg()[0]
    try:
        frames = first_frame(args.starts)
        cpu, rate = telemetry_cpu(args.seconds)
    finally:
        if started_cluster:
            subprocess.run([sys.executable, "-m", "console.cli.main", "cluster", "down"], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    median = statistics.median(frames)
    lines = [
        f"## Console speed ({datetime.date.today().isoformat()})",
        "",
        "- command: `python benchmarks/console_perf.py`",
        f"- machine: {machine(load=False)}",
        f"- the console in a {SIZE[1]}x{SIZE[0]} pseudo-terminal on the emulated cluster ({NODES} idle agents on this "
        f"machine); load average before the run {load:.2f}: the machine is shared, so the figures are indicative",
        "",
        "| figure | value | target |",
        "|---|---:|---:|",
        f"| start to first frame, median of {len(frames)} (min {min(frames):.2f} s, max {max(frames):.2f} s) "
        f"| {median:.2f} s | ≤ {FIRST_FRAME_TARGET_S} s |",
        f"| console CPU, fleet screen, {NODES} nodes at 1 Hz ({rate:.0f} readings/s), {args.seconds:.0f} s window "
        f"| {cpu:.2f} % of one core | ≤ {CPU_TARGET_PCT} % |",
        "",
        f"First frame: {'met' if median <= FIRST_FRAME_TARGET_S else 'NOT met'}; "
        f"telemetry CPU: {'met' if cpu <= CPU_TARGET_PCT else 'NOT met'}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_record:
        path = REPO / "BENCHMARKS.md"
        existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
        atomic_write_text(path, existing.rstrip("\n") + "\n\n" + text)


if __name__ == "__main__":
    main()
