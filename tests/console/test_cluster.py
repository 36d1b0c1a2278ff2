"""`litesrl cluster up/status/down` and `litesrl train --cluster local`, run as real commands with real agents."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from console.cluster.local import read_state
from engine.dhp.events import read_events

pytestmark = pytest.mark.slow


def litesrl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "COLUMNS": "200"})


HANGING_CLOSE = """
import asyncio, sys
import console.cli.train
from engine.dhp.coordinator import Coordinator

async def hang(self):
    await asyncio.sleep(3600)

Coordinator.close = hang
console.cli.train.exit_if_stuck.__defaults__ = (2.0,)
sys.argv = ["litesrl", *sys.argv[1:]]
from console.cli.main import main
main()
"""
"""``litesrl`` whose coordinator never finishes closing its links, and whose watchdog waits 2 s."""


def _report(result: subprocess.CompletedProcess) -> dict:
    """The JSON a command printed; a failure shows its exit status and stderr, not a decoder's complaint."""
    assert result.returncode == 0 and result.stdout.strip(), f"exit {result.returncode}, stderr:\n{result.stderr}"
    return json.loads(result.stdout)


def _gone(pids: list[int], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive:
            return True
        time.sleep(0.1)
    return False


def test_train_without_a_cluster_says_how_to_start_one(tmp_path):
    result = litesrl("train", "--iterations", "2", "--out", str(tmp_path / "run"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "error: no local cluster is up; start one with `litesrl cluster up --nodes 6 --profile tx2`")


def test_up_refuses_an_unknown_profile_before_starting_anything():
    result = litesrl("cluster", "up", "--nodes", "2", "--profile", "cray")
    assert result.returncode == 1
    assert "error: unknown board profile 'cray'; choose one of" in result.stderr
    assert read_state() is None


def test_up_train_status_down_leaves_nothing_running(tmp_path):
    up = litesrl("cluster", "up", "--nodes", "3", "--time-scale", "0.05", "--memory-per-node", "2GB",
                 "--memory-accounting", "exact", "--json")
    assert up.returncode == 0, up.stderr
    state = json.loads(up.stdout)
    pids = [agent["pid"] for agent in state["agents"]]
    try:
        secret = Path(os.environ["XDG_CONFIG_HOME"]) / "litesrl" / "cluster.secret"
        assert state["secret_file"] == str(secret) and stat.S_IMODE(secret.stat().st_mode) == 0o600
        status = json.loads(litesrl("cluster", "status", "--json").stdout)
        assert status["up"] and all(status["alive"].values()) and len(status["alive"]) == 3
        again = litesrl("cluster", "up", "--nodes", "2")
        assert again.returncode == 1
        assert "error: a local cluster of 3 node(s) is already up; run `litesrl cluster down` first" in again.stderr

        run = litesrl("train", "--cluster", "local", "--mode", "dynamic", "--iterations", "6", "--average-every", "3",
                      "--average-weighting", "sum", "--partitions", "2", "--emulate-time", "--out", str(tmp_path / "run"),
                      "--json")
        report = _report(run)
        assert report["iterations"] == 6 and report["reason"] is None
        assert [len(nodes) for nodes in report["plan"]["stages"]] in ([2, 1], [1, 2])
        assert sum(node["iterations"] for node in report["per_node"].values() if node["stage"] == 0) == 6
        assert report["time_scale"] == 0.05 and report["board_ms_per_iteration"] > 0
        assert Path(report["checkpoint"]).is_file() and Path(report["events"]).is_file()

        # Real compute (the default): pretrain's recipe flags, and a budget that re-plans the run to 7 iterations
        # (after warm-up + 5 = 6 iterations, 1 ms is long gone: one more, and the cosine has ended).
        real = litesrl("train", "--cluster", "local", "--mode", "fixed", "--iterations", "100", "--partitions", "2",
                       "--warmup-steps", "1", "--budget", "1ms", "--rotation", "any", "--crop-scale", "0.5",
                       "--load-size", "40", "--average-weighting", "batches", "--out", str(tmp_path / "real"), "--json")
        report = _report(real)
        assert report["iterations"] == 7 and report["time_scale"] is None and "real compute" in report["cluster"]
        stored = torch.load(report["checkpoint"], weights_only=True)
        assert stored["pretrain_config"]["steps"] == 7 and stored["pretrain_config"]["warmup_steps"] == 1
        assert stored["pretrain_config"]["augment"]["rotation"] == "any"
        assert tuple(stored["pretrain_config"]["augment"]["crop_scale"]) == (0.5, 1.0)
        # A data path is one line naming the node and the path: outside the node's own --data (issue 11: the
        # wire never chooses what a node reads), or inside it but missing.
        own = Path(os.environ["XDG_STATE_HOME"]) / "litesrl" / "cluster-data"
        for path, said in ((tmp_path / "nowhere", rf"node-\d reads data only under its own --data {re.escape(str(own))}; "
                                                   rf"the run asked for {re.escape(str(tmp_path / 'nowhere'))}"),
                           (own / "nowhere", rf"data folder {re.escape(str(own / 'nowhere'))} does not exist")):
            bad = litesrl("train", "--cluster", "local", "--iterations", "2", "--data", str(path), "--out", str(tmp_path / "bad"))
            assert bad.returncode == 1 and "Traceback" not in bad.stderr
            assert re.fullmatch(rf"error: node-\d: {said}", bad.stderr.strip().splitlines()[-1]), bad.stderr

        shown = litesrl("train", "--cluster", "local", "--iterations", "2", "--partitions", "2", "--out", str(tmp_path / "run"))
        assert shown.returncode == 1 and "already holds a run; add --resume" in shown.stderr

        # The operator's own cut (e.g. a faster candidate than the best-E one) instead of CWB's choice; in the folder
        # of a run that was stopped before its first checkpoint, whose events the new run must not carry on.
        stale = tmp_path / "chosen" / "events.jsonl"
        stale.parent.mkdir()
        stale.write_bytes((tmp_path / "run" / "events.jsonl").read_bytes())
        chosen = litesrl("train", "--cluster", "local", "--mode", "fixed", "--iterations", "2", "--cut-after", "layer1_0",
                         "--out", str(tmp_path / "chosen"), "--json")
        assert _report(chosen)["plan"]["cut_after"] == ["layer1_0"]
        started = [e for e in read_events(stale) if e.TYPE == "run_started"]
        assert len(started) == 1 and started[0].mode == "fixed"
        # A finished run's report is out before the links close: a close that hangs cannot lose it, and the
        # watchdog ends the process with the run's status and every thread's stack.
        hung = subprocess.run([sys.executable, "-c", HANGING_CLOSE, "train", "--cluster", "local", "--iterations", "2",
                               "--emulate-time", "--out", str(tmp_path / "hung"), "--json"],
                              capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
        assert _report(hung)["iterations"] == 2
        assert "still closing 2 s after the run finished; exiting" in hung.stderr and ", in hang" in hung.stderr
        unknown = litesrl("train", "--cluster", "local", "--iterations", "2", "--cut-after", "layer9_9", "--out",
                          str(tmp_path / "x"))
        assert unknown.returncode == 1
        assert unknown.stderr.strip().splitlines()[-1].startswith("error: cannot cut after layer9_9: "
                                                                  "the profile's layers are conv1, bn1")
    finally:
        down = litesrl("cluster", "down", "--json")
    assert down.returncode == 0, down.stderr
    assert {entry["result"] for entry in json.loads(down.stdout)} == {"stopped"}
    assert _gone(pids), "an agent survived `cluster down`"
    assert read_state() is None
    assert "no local cluster was up" in litesrl("cluster", "down").stderr


def test_down_kills_an_agent_that_ignores_sigterm(tmp_path):
    from console.cluster import local

    state = local.up(1, time_scale=0.05)
    agent = state.agents[0]
    psutil.Process(agent.pid).suspend()  # a stopped process cannot handle SIGTERM
    try:
        outcome = local.down(timeout=1.0)
    finally:
        if psutil.pid_exists(agent.pid):
            try:
                psutil.Process(agent.pid).kill()
            except psutil.NoSuchProcess:
                pass
    assert outcome == [(agent.name, "killed")]
    assert _gone([agent.pid])
