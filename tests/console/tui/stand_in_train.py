"""A stand-in for a ``litesrl train`` left running by a console that died: writes a run's first events, then
waits; SIGINT finishes it as interrupted (as the real one does), SIGUSR1 as completed. Torch-free, so fast.

Usage: ``python -m tests.console.tui.stand_in_train EVENTS ITERATIONS``.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from engine.dhp.events import EventLog, Iteration, RunFinished, RunStarted


def main(events: Path, iterations: int) -> int:
    ended: list[str | None] = []  # the handlers come first: a signal sent once the events show must not kill it
    signal.signal(signal.SIGINT, lambda *_: ended.append("interrupted"))
    signal.signal(signal.SIGUSR1, lambda *_: ended.append(None))
    log = EventLog(events)
    log.emit(RunStarted(0.0, "dynamic", "first_free", (("node-1",),), 100, 0))
    for i in range(iterations):
        log.emit(Iteration(0.1 * (i + 1), i + 1, i, 2.0 - 0.1 * i, 50.0, ("node-1",)))
    print(f"stand-in: {iterations} iterations done", flush=True)
    print("stand-in: waiting", file=sys.stderr, flush=True)
    while not ended:
        time.sleep(0.05)
    log.emit(RunFinished(1.0, iterations, 1.0, {}, ended[0]))
    log.close()
    return 1 if ended[0] else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2])))
