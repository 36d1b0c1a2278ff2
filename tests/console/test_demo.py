"""`litesrl demo`: the headless main job, end to end on a real emulated cluster, leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from console.cluster.local import read_state

pytestmark = pytest.mark.slow


def test_demo_profiles_partitions_trains_and_evaluates(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run(
        [sys.executable, "-m", "console.cli.main", "demo", "--out", str(out), "--iterations", "12", "--average-every", "6"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "demo finished: DHP-trained" in done.stderr
    assert json.loads((out / "profile.json").read_text())["layers"][0]["name"] == "conv1"
    events = [json.loads(line) for line in (out / "train" / "events.jsonl").read_text().splitlines()]
    assert sum(event["type"] == "iteration" for event in events) == 12
    for name in ("DHP-trained", "random"):
        result = json.loads((out / "eval" / name / "results.json").read_text())
        assert 0.0 <= result["overall_accuracy"] <= 1.0 and result["train_images"] == 40
    assert (out / "eval" / "DHP-trained" / "tsne.png").is_file()
    assert read_state() is None  # the cluster the demo started is down again
