"""The board's own entry points (no CLI framework): telemetry as JSON lines with the agent's load, and the profiler."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from nodes.telemetry.json_form import sample_from_json
from nodes.telemetry.process import ProcessWatch, resident_bytes


def test_telemetry_main_streams_json_lines_with_the_marked_agent(tmp_path):
    agent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             env={**os.environ, "LITESRL_AGENT": "b1"})
    try:
        pid_file = tmp_path / "agent-b1.pid"
        pid_file.write_text(f"{agent.pid}\n")
        done = subprocess.run([sys.executable, "-m", "nodes.telemetry_main", "--interval", "0.1", "--count", "2",
                               "--tegrastats-command", str(tmp_path / "none"), "--agent-pid-file", str(pid_file),
                               "--agent-name", "b1"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert len(lines) == 2 and done.stderr.startswith("source: ")
        first = json.loads(lines[0])
        assert sample_from_json(first).ram.total_mb > 0
        assert first["agent"]["pid"] == agent.pid and first["agent"]["rss_bytes"] > 0
        # Another node's marker: a reused pid is not reported as this node's agent.
        wrong = subprocess.run([sys.executable, "-m", "nodes.telemetry_main", "--interval", "0.1", "--count", "1",
                                "--agent-pid-file", str(pid_file), "--agent-name", "b2"],
                               capture_output=True, text=True, timeout=60)
        assert json.loads(wrong.stdout)["agent"] is None
    finally:
        agent.kill()
        agent.wait()


def test_process_watch_measures_cpu_between_reads(tmp_path):
    pid_file = tmp_path / "pid"
    pid_file.write_text(str(os.getpid()))
    watch = ProcessWatch(pid_file)
    first = watch.read()
    sum(i * i for i in range(2_000_000))  # burn some CPU
    second = watch.read()
    assert first["cpu_percent"] == 0.0 and second["cpu_percent"] > 0
    assert second["threads"] >= 1 and abs(second["rss_bytes"] - resident_bytes()) < 50 * 2**20
    pid_file.write_text("not a pid")
    assert watch.read() is None


def test_bad_entry_point_options_are_one_line():
    telemetry = subprocess.run([sys.executable, "-m", "nodes.telemetry_main", "--interval", "0"],
                               capture_output=True, text=True, timeout=60)
    assert telemetry.returncode == 1
    assert telemetry.stderr == "error: telemetry interval must be between 0.01 and 3600 seconds, got 0.0\n"
    profile = subprocess.run([sys.executable, "-m", "nodes.profile_main", "--out", "x.json", "--image-size", "8"],
                             capture_output=True, text=True, timeout=120)
    assert profile.returncode == 1
    assert profile.stderr == "error: image size must be an integer of at least 32 px, got 8\n"
