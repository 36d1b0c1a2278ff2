"""`litesrl train` always exits once its run has finished, even if a task or thread does not let go."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _python(script: str) -> subprocess.CompletedProcess:
    """``script`` run by a fresh interpreter in the repository."""
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO,
                          check=False)


def test_a_thread_that_never_ends_cannot_keep_a_finished_train_alive():
    script = (
        "import threading, time\n"
        "from console.cli.train import exit_if_stuck\n"
        "exit_if_stuck(3, grace=0.5)\n"
        "threading.Thread(target=time.sleep, args=(3600,)).start()  # not a daemon: it would hold the exit\n"
    )
    started = time.monotonic()
    result = _python(script)
    assert result.returncode == 3
    assert "still closing 0.5 s after the run finished; exiting" in result.stderr
    assert time.monotonic() - started < 30


def test_only_the_litesrl_process_arms_the_exit_timer(monkeypatch):
    # Run in-process (typer's CliRunner, as the first-run test does), a finished run must never end the host.
    from types import SimpleNamespace

    import console.cli.train as train_cli

    armed: list[int] = []
    monkeypatch.setattr(train_cli, "exit_if_stuck", lambda code, grace=0.0: armed.append(code))
    monkeypatch.setattr(train_cli, "_process_entry", False)
    live = train_cli._Live(10, quiet=True)
    live.event(SimpleNamespace(TYPE="run_finished", reason=None))
    assert armed == []
    train_cli.enable_exit_watchdog()  # what `litesrl`'s entry point does
    live.event(SimpleNamespace(TYPE="run_finished", reason="a node failed"))
    assert armed == [1]


def test_a_command_that_goes_on_after_train_disarms_the_exit_timer():
    # `litesrl demo` trains, then evaluates for longer than the grace: the timer must not end it mid-evaluation.
    script = (
        "import time\n"
        "from console.cli.train import disarm_exit_watchdog, exit_if_stuck\n"
        "exit_if_stuck(3, grace=0.5)\n"
        "disarm_exit_watchdog()\n"
        "time.sleep(1.5)\n"
        "print('went on')\n"
    )
    result = _python(script)
    assert result.returncode == 0 and result.stdout.strip() == "went on", result.stderr


def test_the_watchdog_shows_what_the_loop_still_awaits():
    script = (
        "import asyncio\n"
        "from console.cli.train import exit_if_stuck\n"
        "async def never_closes():\n"
        "    await asyncio.sleep(3600)\n"
        "async def main():\n"
        "    exit_if_stuck(4, grace=0.5)\n"
        "    await never_closes()\n"
        "asyncio.run(main())\n"
    )
    result = _python(script)
    assert result.returncode == 4
    assert "most recent call first" in result.stderr  # every thread's stack
    assert "in never_closes" in result.stderr  # and the task's, where the hang really is
