"""`litesrl train` always exits once its run has finished, even if a task or thread does not let go."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_thread_that_never_ends_cannot_keep_a_finished_train_alive():
    script = (
        "import threading, time\n"
        "from console.cli.train import exit_if_stuck\n"
        "exit_if_stuck(3, grace=0.5)\n"
        "threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: it would hold the exit\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=REPO, check=False)
    assert result.returncode == 3
    assert "still closing 0.5 s after the run finished; exiting" in result.stderr
    assert time.monotonic() - started < 30
