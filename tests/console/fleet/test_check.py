"""``check``: the probe really run over SSH on loopback, and the report's interpretation of Jetson facts."""

from __future__ import annotations

import platform
import shutil
from dataclasses import replace
from importlib import metadata

import psutil
import pytest

from console.fleet.check import board_from_model, build_report, check_node, parse_l4t
from console.fleet.fleet import Fleet
from console.fleet.inventory import load_inventory
from console.fleet.ssh import LinkState

TX2_RELEASE = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, EABI: aarch64, DATE: Sat Feb 19 2022"


@pytest.mark.ssh
async def test_check_over_loopback_reports_this_machine(sshd, trusted, tmp_path, make_inventory):
    data = tmp_path / "dataset"
    data.mkdir()
    inv = load_inventory(make_inventory(names=("n1", "n2"), node_extra=f'data_path = "{data}"'))
    async with Fleet(inv) as fleet:
        outcomes = await fleet.each(check_node)
    assert [o.node for o in outcomes] == ["n1", "n2"]
    assert all(o.ok and o.status.state is LinkState.UP for o in outcomes)
    report = outcomes[0].value
    assert report.python == platform.python_version()
    assert report.torch.split("+")[0] == metadata.version("torch").split("+")[0]
    assert isinstance(report.cuda, bool)
    assert report.mem_total == psutil.virtual_memory().total
    assert 0 < report.mem_available <= report.mem_total
    assert report.disk_path == str(data)
    assert report.disk_free == pytest.approx(shutil.disk_usage(data).free, rel=0.05)
    assert report.board == "generic"
    # Nothing is deployed in the node's venv yet, and check says what to do about it.
    assert report.litesrl is None
    assert report.problems == (f"litesrl is not installed in {tmp_path / 'node-n1' / 'venv'} "
                               "(run `litesrl nodes deploy n1`)",)


@pytest.mark.ssh
async def test_check_flags_a_missing_dataset_and_a_missing_python(sshd, trusted, tmp_path, make_inventory):
    inv = load_inventory(make_inventory(node_extra=f'data_path = "{tmp_path / "nowhere"}"'))
    async with Fleet(inv) as fleet:
        [outcome] = await fleet.each(check_node)
    assert f"data_path {tmp_path / 'nowhere'} does not exist" in outcome.value.problems

    inv = load_inventory(make_inventory())
    broken = replace(inv.nodes[0], python="/no/such/python3")
    async with Fleet(inv, [broken]) as fleet:
        [outcome] = await fleet.each(check_node)
    assert not outcome.ok and outcome.status.ok
    assert outcome.error.startswith("probe with /no/such/python3 failed (exit 127)")


def _probe(**overrides):
    probe = {"model": "NVIDIA Jetson TX2 Developer Kit", "tegra_release": TX2_RELEASE, "jetpack": None,
             "python": "3.10.12", "python_path": "/usr/bin/python3", "torch": "2.1.0", "cuda": True,
             "cuda_device": "Orin", "mem_total": 8 * 1024**3, "mem_available": 6 * 1024**3,
             "data_exists": True, "disk_path": "/data", "disk_free": 10**10, "litesrl": "0.1.0",
             "missing": {}, "optional_missing": [], "rss_imports": 700 * 10**6, "rss_cuda": 1100 * 10**6,
             "deployed": {"python": "/usr/bin/python3"}}
    return {**probe, **overrides}


def test_a_healthy_tx2_has_no_problems(monkeypatch):
    monkeypatch.setattr("console.fleet.check.local_version", lambda: "0.1.0")
    report = build_report("tx2-1", "tx2", 3 * 1024**3, "/data", "~/litesrl/venv", _probe(), python="/usr/bin/python3")
    assert (report.detected_board, report.l4t, report.jetpack) == ("tx2", "32.7.1", "4.6.1")
    assert report.ready and report.problems == () and report.notes == ()
    assert report.overhead == 1100 * 10**6  # torch imported plus the CUDA context


def test_problems_are_named(monkeypatch):
    monkeypatch.setattr("console.fleet.check.local_version", lambda: "0.2.0")
    report = build_report("n", "xavier-nx", 12 * 1024**3, "/data", "~/v", _probe(
        python="3.6.9", cuda=False, data_exists=False, jetpack="4.6.1-b110"), python="/usr/bin/python3")
    assert report.jetpack == "4.6.1"
    assert report.problems == (
        "Python 3.6.9 is older than 3.10, which litesrl needs",
        "torch 2.1.0 sees no CUDA device",
        "inventory says board 'xavier-nx' but the node is 'tx2' (NVIDIA Jetson TX2 Developer Kit)",
        "memory_budget 12.88 GB exceeds the node's 8.59 GB",
        "data_path /data does not exist",
        "litesrl 0.1.0 on the node differs from 0.2.0 here (run `litesrl nodes deploy n`)",
    )
    no_torch = build_report("n", "tx2", 1, None, "~/v", _probe(torch=None, torch_error="ImportError: nope"),
                            python="/usr/bin/python3")
    assert no_torch.problems[0].startswith("torch is not importable by /usr/bin/python3: ImportError: nope; "
                                           "JetPack provides torch")
    assert no_torch.overhead is None


def test_each_missing_module_is_named_with_its_fix(monkeypatch):
    monkeypatch.setattr("console.fleet.check.local_version", lambda: "0.1.0")
    missing = {"numpy": "ModuleNotFoundError: No module named 'numpy'",
               "nodes.agent": "ModuleNotFoundError: No module named 'numpy'",
               "nodes.telemetry_main": "ModuleNotFoundError: No module named 'nodes.telemetry_main'",
               "nodes.profile_main": "ModuleNotFoundError: No module named 'yaml'"}
    report = build_report("tx2-1", "tx2", 3 * 10**9, None, "~/v", _probe(missing=missing, optional_missing=["psutil"]),
                          python="/usr/bin/python3")
    jetpack, agent, telemetry, profiler = report.problems
    assert jetpack.startswith("~/v cannot import numpy (ModuleNotFoundError: No module named 'numpy'): JetPack provides")
    assert jetpack.endswith("then `litesrl nodes deploy tx2-1 --rebuild`")
    assert agent.startswith("~/v cannot import nodes.agent (") and "JetPack provides" in agent
    assert telemetry.endswith(": run `litesrl nodes deploy tx2-1`")
    assert profiler.endswith(": run `litesrl nodes bundle` where an index is reachable, then `litesrl nodes deploy tx2-1`")
    assert report.notes == ("psutil is not installed (optional: `litesrl nodes bundle` where an index is reachable, "
                            "then `litesrl nodes deploy tx2-1`)",)


def test_a_venv_made_from_another_python_and_a_budget_without_room_for_the_runtime(monkeypatch):
    monkeypatch.setattr("console.fleet.check.local_version", lambda: "0.1.0")
    report = build_report("tx2-1", "tx2", 7 * 1024**3, None, "~/v", _probe(), python="/opt/torch-env/bin/python")
    assert report.problems == (
        "memory_budget 7.52 GB plus the agent's 1.10 GB runtime exceeds the node's 8.59 GB",
        "the venv ~/v was made from /usr/bin/python3, not the inventory's python /opt/torch-env/bin/python "
        "(run `litesrl nodes deploy tx2-1`, which makes it afresh)",
    )


@pytest.mark.parametrize("line, l4t", [(TX2_RELEASE, "32.7.1"), ("# R35 (release), REVISION: 4.1, GCID: 1", "35.4.1"),
                                        ("# R36 (release), REVISION: 3.0", "36.3.0"), ("garbage", None), (None, None)])
def test_parse_l4t(line, l4t):
    assert parse_l4t(line) == l4t


@pytest.mark.parametrize("model, board", [
    ("NVIDIA Jetson TX2 Developer Kit", "tx2"), ("NVIDIA Jetson TX2 NX Developer Kit", "tx2"),
    ("NVIDIA Jetson Xavier NX Developer Kit", "xavier-nx"), ("Jetson-AGX", "agx-xavier"),
    ("NVIDIA Jetson AGX Orin Developer Kit", "agx-orin"), ("NVIDIA Jetson Orin Nano Developer Kit", "orin-nano"),
    ("NVIDIA Jetson Orin NX Engineering Reference Developer Kit", "orin-nx"),
    ("NVIDIA Jetson Nano Developer Kit", "nano"), ("NVIDIA Jetson TX1", "tx1"), ("Raspberry Pi 4", None), (None, None),
])
def test_board_from_model(model, board):
    assert board_from_model(model) == board
