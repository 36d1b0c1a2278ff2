"""`litesrl demo`: the headless main job, end to end on a real emulated cluster, leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from console.cluster.local import read_state, state_dir

pytestmark = pytest.mark.slow

DEMO_LIMIT_S = 240
"""Well under pytest's 300 s, so a hung demo is reported with its own diagnostics (it takes ~40 s)."""


def test_demo_profiles_partitions_trains_and_evaluates(tmp_path):
    out = tmp_path / "demo"
    stdout, stderr = tmp_path / "demo.out", tmp_path / "demo.err"
    # Files, not pipes: a pipe would also wait for any child that inherited it.
    with open(stdout, "wb") as out_file, open(stderr, "wb") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "console.cli.main", "demo", "--out", str(out), "--iterations", "12", "--average-every", "6"],
            stdout=out_file, stderr=err_file, env={**os.environ, "COLUMNS": "160"}, start_new_session=True,
        )
        try:
            returncode = process.wait(DEMO_LIMIT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the demo ran past {DEMO_LIMIT_S} s\n" + _post_mortem(process, out, stderr))
    assert returncode == 0, stderr.read_text()[-3000:]
    assert "demo finished: DHP-trained" in stderr.read_text()
    assert json.loads((out / "profile.json").read_text())["layers"][0]["name"] == "conv1"
    events = [json.loads(line) for line in (out / "train" / "events.jsonl").read_text().splitlines()]
    assert sum(event["type"] == "iteration" for event in events) == 12
    for name in ("DHP-trained", "random"):
        result = json.loads((out / "eval" / name / "results.json").read_text())
        assert 0.0 <= result["overall_accuracy"] <= 1.0 and result["train_images"] == 40
    assert (out / "eval" / "DHP-trained" / "tsne.png").is_file()
    assert read_state() is None  # the cluster the demo started is down again


def _post_mortem(process: subprocess.Popen, out: Path, stderr: Path) -> str:
    """Every stack (SIGUSR1 -> faulthandler) of the demo and its agents, their logs and the run's last events;
    then everything is killed."""
    state = read_state()
    agents = list(state.agents) if state else []
    for pid in [process.pid] + [agent.pid for agent in agents]:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    time.sleep(2.0)
    os.killpg(process.pid, signal.SIGKILL)
    for agent in agents:
        try:
            os.kill(agent.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    parts = [("demo stderr", stderr), ("events", out / "train" / "events.jsonl")]
    for log in sorted((state_dir() / "agents").glob("*.log*")):
        parts.append((log.name, log))
    return "\n".join(f"--- {title} (tail)\n{_tail(path)}" for title, path in parts)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"
