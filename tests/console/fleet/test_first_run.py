"""First run to first chain on two JetPack-only "boards" over real SSH: the operator's documented flow, end to end.

Each board is this machine behind a real loopback sshd whose sessions have no reachable package
index, with a Python that has only python + torch, torchvision, numpy and pillow (see
``jetpack_python``): trust -> secret -> check -> deploy -> check -> start -> the console shows both
boards up with live telemetry and their agents' memory -> profile on a board (console ``p`` and
``nodes profile``) -> two training iterations over the two boards with that profile -> stop, leaving no
process and no stray file behind.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import stat
import subprocess

import psutil
import pytest
from typer.testing import CliRunner

from console.cli.main import app as cli
from console.fleet.profiles import measured_dir
from console.services.backend import ProfileRequest
from tests.console.fleet.jetpack_python import GROUND_ONLY, make_board_python
from tests.console.fleet.sshd import find_sshd, start_sshd
from tests.nodes.agent_procs import make_data

pytestmark = [pytest.mark.ssh, pytest.mark.slow]

NO_INDEX = ("SetEnv PIP_NO_INDEX=1 PIP_INDEX_URL=http://127.0.0.1:9/simple",)
"""Every SSH session on the boards: pip finds no index (port 9 answers nothing)."""

TINY = ProfileRequest(batch_size=2, image_size=32, repeats=1, warmup=0, threads=1)


@pytest.fixture
def offline_sshd(tmp_path):
    binary = find_sshd()
    if binary is None:
        pytest.skip("no OpenSSH sshd binary")
    server = start_sshd(tmp_path / "sshd", binary, getpass.getuser(), extra_config=NO_INDEX)
    yield server
    server.stop()


def litesrl(*args: str) -> tuple[int, str]:
    """Run a ``litesrl`` command in this process (as its console script would); returns (exit code, output)."""
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def _agent_processes(root) -> list[psutil.Process]:
    """Processes of the board runtime started from under ``root`` (agents, telemetry, profiler)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or ())
        if str(root) in cmdline and any(f"nodes.{m}" in cmdline for m in ("agent_main", "telemetry_main",
                                                                            "profile_main")):
            found.append(process)
    return found


@pytest.mark.timeout(900)  # a minute alone on two cores; much longer when the machine is shared
def test_first_run_to_first_chain_on_jetpack_only_boards(offline_sshd, tmp_path, monkeypatch):
    python = make_board_python(tmp_path / "jetpack")
    for module in GROUND_ONLY:  # the boards really lack the ground station's packages
        assert subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 1
    data = make_data(tmp_path / "data")
    lines = ["[cluster]", 'name = "rack"', f'known_hosts = "{tmp_path / "known_hosts"}"',
             f'identity_file = "{offline_sshd.client_key}"']
    for index, name in enumerate(("b1", "b2")):
        lines += ["[[nodes]]", f'name = "{name}"', f'host = "{offline_sshd.host}"', f"port = {offline_sshd.port}",
                  f'user = "{offline_sshd.user}"', 'board = "generic"', 'memory_budget = "3GB"',
                  f'python = "{python}"', f'workdir = "{tmp_path / ("board-" + name)}"', f'data_path = "{data}"',
                  f"agent_port = {47140 + index}"]
    inventory = tmp_path / "rack.toml"
    inventory.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("LITESRL_INVENTORY", str(inventory))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # the ground station is offline too: the wheel builds from the checkout

    code, out = litesrl("nodes", "trust", "b1", "--yes")
    assert code == 0 and "added SHA256:" in out, out
    code, out = litesrl("nodes", "secret")
    assert code == 0 and out.startswith("created the cluster secret "), out
    secret_path = out.split("created the cluster secret ")[1].split(" (mode")[0]
    assert stat.S_IMODE(os.stat(secret_path).st_mode) == 0o600

    code, out = litesrl("nodes", "check", "--json")
    assert code == 3
    assert all(any("litesrl is not installed" in p for p in n["result"]["problems"]) for n in json.loads(out)["nodes"])

    code, out = litesrl("nodes", "deploy", "--json")
    assert code == 0, out
    deployed = json.loads(out[out.index("{"):])["nodes"]
    assert [n["result"]["created_venv"] for n in deployed] == [True, True]
    assert all("no wheelhouse for" in n["result"]["missing"][0] for n in deployed)

    code, out = litesrl("nodes", "check", "--json")
    assert code == 0, out
    checked = [n["result"] for n in json.loads(out)["nodes"]]
    assert all(r["problems"] == [] for r in checked), checked
    assert all(r["overhead"] > 100 * 2**20 for r in checked)  # torch alone is hundreds of MB

    code, out = litesrl("nodes", "start", "--json")
    assert code == 0, out
    assert [n["result"]["action"] for n in json.loads(out)["nodes"]] == ["started", "started"]
    try:
        console = asyncio.run(_console_sees_the_boards_and_profiles_one(inventory))
        assert console["sources"] == {"b1": "proc", "b2": "proc"}  # no psutil on JetPack: /proc
        assert all(rss > 100 * 2**20 for rss in console["agent_rss"].values())
        assert console["profile"] == "measured on b1"

        code, out = litesrl("nodes", "profile", "b2", "--batch-size", "2", "--image-size", "32", "--repeats", "1",
                            "--warmup", "0", "--threads", "1", "--json")
        assert code == 0, out
        kept = json.loads(out[out.index("{"):])["path"]
        assert kept == str(measured_dir("rack") / "b2-resnet18.json")

        # No --profile: training uses the newest profile measured on these boards (b2's).
        code, out = litesrl("train", "--iterations", "2", "--average-every", "0", "--partitions", "2",
                            "--batch-size", "4", "--image-size", "32", "--out", str(tmp_path / "run"), "--json")
        assert code == 0, out
        report = json.loads(out[out.index("{"):])
        assert report["iterations"] == 2 and report["reason"] is None
        assert sorted(report["per_node"]) == ["b1", "b2"]
    finally:
        code, out = litesrl("nodes", "stop", "--json")
    assert code == 0, out
    assert {n["result"]["action"] for n in json.loads(out)["nodes"]} == {"stopped"}
    _gone = psutil.wait_procs(_agent_processes(tmp_path), timeout=10)[1]
    assert not _gone, f"still running: {[p.cmdline() for p in _gone]}"
    stray = [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert not stray, stray


async def _console_sees_the_boards_and_profiles_one(inventory) -> dict:
    """Run the console on the inventory until both boards are up with telemetry, then profile b1 with ``p``'s path."""
    from console.tui.launch import LaunchOptions, create_app

    app = create_app(LaunchOptions(inventory=inventory, interval=0.5))
    seen: dict = {}
    async with app.run_test(size=(100, 30)) as pilot:
        for _ in range(1200):
            await pilot.pause(0.1)
            views = app.fleet.views()
            if len(views) == 2 and all(v.latest and v.latest.agent and v.status.ok for v in views):
                break
        views = app.fleet.views()
        seen["sources"] = {v.info.name: v.latest.sample.source if v.latest else None for v in views}
        seen["agent_rss"] = {v.info.name: v.latest.agent.rss_bytes if v.latest and v.latest.agent else 0
                             for v in views}
        app.run_profile("b1", TINY)
        for _ in range(1800):
            await pilot.pause(0.1)
            if app.profile_slot.profile is not None or app.profile_slot.error:
                break
        seen["profile"] = app.profile_slot.origin or app.profile_slot.error
    return seen
