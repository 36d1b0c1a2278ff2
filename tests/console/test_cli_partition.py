"""`litesrl partition`: the real entry point on a synthetic profile written here; output, JSON and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cwb.profile_format import save_profile
from tests.engine.cwb.synthetic import paper_like_profile

REPO = Path(__file__).resolve().parents[2]


def litesrl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "160"}
    return subprocess.run(
        [sys.executable, "-m", "console.cli.main", "partition", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, env=env,
    )


@pytest.fixture
def profile(tmp_path) -> Path:
    return save_profile(paper_like_profile(), tmp_path / "profile.json")


def test_table_marks_the_choice_and_draws_the_strip(profile):
    done = litesrl("--profile", str(profile), "--nodes", "6", "--memory-per-node", "3GB",
                   "--bandwidth", "1Gbit", "--latency", "0.2ms")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Partitions 3 (the fewest that fit memory)" in out
    assert "★" in out and "CWB candidates" in out
    assert "Cut points (cwb): after layer1.0, layer3.1.conv" in out
    assert "Replica plan (dynamic chains): 3/2/1" in out
    assert "layers " in out and "time " in out and "memory " in out


def test_json_has_the_same_report(profile):
    done = litesrl("--profile", str(profile), "--nodes", "6", "--memory-per-node", "3GB", "--json", "--method", "all")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["partitions"] == 3 and data["partitions_automatic"] is True
    cwb = data["methods"]["cwb"]
    assert cwb["best"]["cut_after"] == ["layer1.0", "layer3.1.conv"] and cwb["best"]["fits"]
    assert data["objective"] == "paper" and data["memory_accounting"] == "exact"
    assert len(cwb["candidates"]) == 10 and cwb["feasible_count"] == 31
    assert data["methods"]["pipedream"]["best"]["fits"] is False
    assert data["methods"]["gpipe"]["best"]["fits"] is False
    assert data["replicas"]["best"]["replicas"] == [3, 2, 1]
    assert data["network"]["bandwidth_bytes_per_s"] == 125_000_000
    shares = [s["share"] for s in cwb["best"]["stages"]]  # compute / T: they leave the transfers' share
    assert sum(shares) == pytest.approx(1.0 - cwb["best"]["transfer_share"])


def test_busy_objective_is_the_named_alternative(profile):
    done = litesrl("--profile", str(profile), "--nodes", "6", "--memory-per-node", "3GB", "--json", "--objective", "busy")
    assert done.returncode == 0, done.stderr
    best = json.loads(done.stdout)["methods"]["cwb"]["best"]
    assert best["cut_after"] == ["relu", "layer1.1"] and best["objective"] == "busy"
    assert sum(s["share"] for s in best["stages"]) == pytest.approx(1.0)


@pytest.mark.parametrize("option,value,choices", [("--objective", "fast", "paper, busy"),
                                                  ("--memory-accounting", "guess", "exact, paper")])
def test_unknown_choice_is_one_line_with_the_valid_ones(profile, option, value, choices):
    done = litesrl("--profile", str(profile), "--nodes", "6", "--memory-per-node", "3GB", option, value)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert f"choose one of {choices}" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_method_all_shows_side_by_side(profile):
    done = litesrl("--profile", str(profile), "--nodes", "6", "--memory-per-node", "3GB", "--method", "all")
    assert done.returncode == 0, done.stderr
    assert "Methods side by side" in done.stdout
    assert "pipedream" in done.stdout and "gpipe" in done.stdout and "no: P1" in done.stdout


def test_nothing_fits_names_the_budget_in_one_line(profile):
    done = litesrl("--profile", str(profile), "--nodes", "6", "--memory-per-node", "3GB", "--partitions", "2")
    assert done.returncode != 0
    assert done.stderr.startswith("error: no cut of 28 layers into 2 partitions")
    assert "give every node at least 3.31 GB, or use 3 partitions" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_too_few_nodes_names_the_node_count(profile):
    done = litesrl("--profile", str(profile), "--nodes", "2", "--memory-per-node", "3GB")
    assert done.returncode != 0
    assert "or use 3 nodes of 3.00 GB (2 given)" in done.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--nodes", "6", "--memory-per-node", "3GB", "--bandwidth", "1Gb"], "ambiguous"),
        (["--nodes", "6"], "give --nodes N with --memory-per-node SIZE"),
        (["--nodes", "6", "--memory-per-node", "lots"], "size 'lots' is not a number"),
    ],
)
def test_bad_options_are_one_line_errors(profile, args, fragment):
    done = litesrl("--profile", str(profile), *args)
    assert done.returncode != 0 and fragment in done.stderr and "Traceback" not in done.stderr


def test_bad_profile_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    done = litesrl("--profile", str(bad), "--nodes", "3", "--memory-per-node", "3GB")
    assert done.returncode != 0
    assert done.stderr == f"error: {bad}: 'format' must be 'litesrl-profile', got None\n"


def test_mixed_nodes_file(profile, tmp_path):
    nodes = tmp_path / "mixed.toml"
    nodes.write_text(
        '[network]\nbandwidth = "1Gbit"\n'
        '[[nodes]]\nname = "tx2"\ncount = 4\nmemory_budget = "3GB"\n'
        '[[nodes]]\nname = "orin"\nboard = "Jetson AGX Orin"\nspeed = 2.0\nmemory_budget = "12GB"\n'
    )
    done = litesrl("--profile", str(profile), "--nodes-file", str(nodes), "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    # The Orin holds the whole model: one partition suffices, and the search uses it.
    assert data["partitions"] == 1 and data["methods"]["cwb"]["best"]["stages"][0]["node"] == "orin"
    three = json.loads(litesrl("--profile", str(profile), "--nodes-file", str(nodes), "--partitions", "3", "--json").stdout)
    assert three["methods"]["cwb"]["orders_searched"] > 1
    assert "orin" in [s["node"] for s in three["methods"]["cwb"]["best"]["stages"]]
    assert sum(three["replicas"]["best"]["replicas"]) + len(three["replicas"]["best"]["idle"]) == 5


def test_paper_accounting_on_the_reference_profile_gives_the_papers_cut():
    reference = REPO / "assets" / "profiles" / "tx2-resnet18.json"
    done = litesrl("--profile", str(reference), "--nodes", "6", "--memory-per-node", "3GiB",
                   "--memory-accounting", "paper", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["partitions"] == 3 and data["partitions_automatic"]  # 7.6 GB over 3 GB boards, as in the paper
    best = data["methods"]["cwb"]["best"]
    assert best["cut_after"] == ["maxpool", "layer1_1"] and data["methods"]["cwb"]["feasible_count"] == 2
    assert [round(s["compute_ms"]) for s in best["stages"]] == [1037, 1142, 922]  # Table 5
    recommended = data["recommended"]  # the fastest simulated plan, and the baselines beside it
    assert recommended["cut_after"] == ["maxpool", "layer1_1"] and recommended["replicas"] == [3, 2, 1]
    assert recommended["mode"] == "dynamic" and recommended["policy"] in ("first_free", "earliest_finish")
    methods = {(b["method"], b["mode"]) for b in data["baselines"]}
    assert {("paper", "fixed"), ("paper", "dynamic"), ("pipedream", "fixed"), ("gpipe", "fixed")} <= methods
    assert all(recommended["predicted_iteration_ms"] <= b["predicted_iteration_ms"]
               for b in data["baselines"] if b["fits"])
