"""Launching the console: options, errors as one line, the real wiring, and no torch in the console process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from console.errors import ConsoleError
from console.services.backend_local import LocalBackend
from console.services.backend_ssh import SSHBackend
from console.tui.app import ConsoleApp
from console.tui.launch import LaunchOptions, create_app, create_backend, parse_options
from tests.conftest import REPO_ROOT


def test_options_pick_the_cluster():
    assert parse_options(["--local", "6", "--time-scale", "0.1"]) == LaunchOptions(local=6, time_scale=0.1)
    assert parse_options([]).local is None and parse_options(["--interval", "2"]).interval == 2.0
    with pytest.raises(ConsoleError, match="--local needs at least one node, got 0"):
        parse_options(["--local", "0"])
    with pytest.raises(ConsoleError, match="--interval must be between 0.1 and 60 seconds, got 0.0"):
        parse_options(["--interval", "0"])
    with pytest.raises(SystemExit):
        parse_options(["--local", "2", "--inventory", "x.toml"])


def test_without_an_inventory_the_console_watches_the_emulated_cluster(tmp_path, monkeypatch):
    backend = create_backend(LaunchOptions())
    assert isinstance(backend, LocalBackend) and backend.want is None
    app = create_app(LaunchOptions(local=4, interval=2.0))
    assert isinstance(app, ConsoleApp) and app.backend.want == 4 and app.settings.interval == 2.0
    inventory = tmp_path / "inv.toml"
    inventory.write_text('[[nodes]]\nname = "a"\nhost = "h"\nboard = "tx2"\nmemory_budget = "3GB"\n')
    monkeypatch.setenv("LITESRL_INVENTORY", str(inventory))
    assert isinstance(create_backend(LaunchOptions()), SSHBackend)


def run_console(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "console.tui.launch", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT, env={**os.environ, **(env or {})})


def test_a_bad_inventory_is_one_error_line_and_exit_2(tmp_path):
    bad = tmp_path / "inv.toml"
    bad.write_text('[[nodes]]\nname = "a"\nhost = "h"\nboard = "tx9"\nmemory_budget = "3GB"\n')
    result = run_console("--inventory", str(bad))
    assert result.returncode == 2
    assert result.stderr == f"error: {bad}: node 'a': board: unknown board 'tx9' (one of: tx2, xavier-nx, " \
        "agx-xavier, orin-nano, orin-nx, agx-orin, nano, tx1, generic)\n"
    missing = run_console("--inventory", str(tmp_path / "none.toml"))
    assert missing.returncode == 2 and missing.stderr.startswith("error: ") and "does not exist" in missing.stderr


def test_the_console_runs_on_the_cluster_without_importing_torch(cluster):
    script = textwrap.dedent("""
        import asyncio, sys
        from console.tui.launch import LaunchOptions, create_app

        async def main():
            app = create_app(LaunchOptions(interval=0.5))
            async with app.run_test(size=(80, 24)) as pilot:
                for _ in range(300):
                    await pilot.pause(0.1)
                    if app.fleet.views() and all(v.latest for v in app.fleet.views()):
                        break
                app.load_reference_profile()
                await pilot.pause(1.0)
                await pilot.press("3", "1", "enter")
                await pilot.pause(0.5)
                print(len(app.fleet.views()), type(app.screen).__name__, app.profile_slot.origin)
            print("torch" in sys.modules, sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")))

        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env=os.environ.copy())
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "False []"
    assert lines[-2] == "3 NodeScreen TX2 reference"  # every screen was used, the profile searched


def test_importing_the_app_loads_no_torch():
    result = subprocess.run([sys.executable, "-X", "importtime", "-c", "import console.tui.app, console.tui.launch"],
                            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line]
    assert "textual.app" in imported and "console.tui.app" in imported
    assert not [name for name in imported if name.split(".")[0] == "torch"]
