"""`litesrl status` and the run finder behind it: the cluster's agents, training runs found by their processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from console.services.run_status import find_runs, option, read_progress, train_arguments
from tests.conftest import REPO_ROOT


def litesrl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli.main", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT, env=os.environ.copy())


def test_train_processes_are_recognised_but_not_their_wrappers():
    py = "/venv/bin/python3.11"
    assert train_arguments([py, "-m", "console.cli.main", "train", "--out", "x"]) == ["--out", "x"]
    assert train_arguments(["/venv/bin/litesrl", "train"]) == []
    assert train_arguments([py, "/venv/bin/litesrl", "train", "--cluster=local"]) == ["--cluster=local"]
    assert train_arguments(["timeout", "300", py, "-m", "console.cli.main", "train"]) is None
    assert train_arguments([py, "-m", "console.cli.main", "status"]) is None
    assert train_arguments(["bash", "-c", "litesrl train"]) is None
    assert option(["--out", "a", "--events=b.jsonl", "--out", "c"], "--out") == "c"
    assert option(["--events=b.jsonl"], "--events") == "b.jsonl" and option([], "--cluster") is None


def test_status_without_anything_running_says_so():
    result = litesrl("status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"cluster": None, "fleet": None, "training": []}
    assert "no emulated cluster" in litesrl("status").stdout


@pytest.mark.slow
def test_status_shows_the_agents_and_a_training_run_in_progress(cluster, tmp_path):
    train = subprocess.Popen(
        ["timeout", "300", sys.executable, "-m", "console.cli.main", "train", "--cluster", "local", "--iterations", "400",
         "--average-every", "0", "--out", "run"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env=os.environ.copy())
    events = tmp_path / "run" / "events.jsonl"
    try:
        runs = []
        for _ in range(600):
            # Only this test's run: another test (another xdist worker) may be training beside it.
            runs = [run for run in find_runs() if run.events == events]
            if (runs and read_progress(runs[0]).completed >= 2) or train.poll() is not None:
                break
            time.sleep(0.1)
        assert len(runs) == 1 and runs[0].cluster == "local"
        result = litesrl("status", "--json")
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        agents = report["cluster"]["agents"]
        assert [a["node"] for a in agents] == ["node-1", "node-2", "node-3"] and all(a["running"] for a in agents)
        assert all(a["rss_bytes"] > 10 * 2**20 and a["memory_budget_bytes"] == 1_500_000_000 for a in agents)
        (run,) = [run for run in report["training"] if run["events"] == str(events)]
        assert run["pid"] == runs[0].pid and run["mode"] == "dynamic" and run["iterations"] == 400
        assert 2 <= run["completed"] < 400
        text = litesrl("status").stdout
        assert "emulated cluster: 3 × tx2" in text and f"training pid {run['pid']} on local: dynamic chains" in text
    finally:
        train.terminate()
        train.wait(30)
