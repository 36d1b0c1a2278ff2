"""``deploy``: a real wheel of this checkout, uploaded over SFTP and pip-installed into a venv on loopback."""

from __future__ import annotations

import subprocess
import zipfile
from dataclasses import replace

import pytest

from console.fleet.check import check_node
from console.fleet.deploy import deploy_node
from console.fleet.fleet import Fleet
from console.fleet.inventory import load_inventory
from console.fleet.wheel import PROJECT_ROOT, build_wheel, local_version

pytestmark = [pytest.mark.ssh, pytest.mark.slow]


async def test_wheel_is_built_once_per_version_then_cached(tmp_path):
    had_build_dir = (PROJECT_ROOT / "build").exists()
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    version = local_version()
    assert wheel.parent == tmp_path / "cache" / version
    assert wheel.name == f"litesrl-{version}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "console/fleet/deploy.py" in names and "engine/io.py" in names
    assert "assets/inventory.example.toml" in names
    assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)
    stamp = wheel.stat().st_mtime_ns
    assert await build_wheel(cache_dir=tmp_path / "cache") == wheel
    assert wheel.stat().st_mtime_ns == stamp
    rebuilt = await build_wheel(cache_dir=tmp_path / "cache", rebuild=True)
    assert rebuilt == wheel and rebuilt.stat().st_mtime_ns != stamp
    # The build ran on a copy of the sources: it left no build/ folder in the checkout.
    assert (PROJECT_ROOT / "build").exists() == had_build_dir


async def test_deploy_installs_the_wheel_into_a_venv_on_the_node(sshd, trusted, tmp_path, make_inventory):
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory())
    node = inv.nodes[0]
    steps: list[str] = []
    uploaded: list[tuple[int, int]] = []

    def progress(step: str, done: int, total: int) -> None:
        steps.append(step)
        if step == "upload" and total:
            uploaded.append((done, total))

    async with Fleet(inv) as fleet:
        [outcome] = await fleet.each(lambda conn: deploy_node(conn, wheel, progress=progress))
        assert outcome.ok, outcome.error
        result = outcome.value
        assert (result.version, result.created_venv) == (local_version(), True)
        assert result.wheel == f"{node.workdir}/wheels/{wheel.name}"
        assert uploaded[-1] == (wheel.stat().st_size, wheel.stat().st_size)
        assert steps[0] == "upload" and steps[-1] == "done" and "install" in steps

        venv_python = tmp_path / "node-n1" / "venv" / "bin" / "python"
        assert (tmp_path / "node-n1" / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
        assert "include-system-site-packages = true" in (tmp_path / "node-n1" / "venv" / "pyvenv.cfg").read_text()
        # The venv really imports the installed package (engine.io needs only the standard library),
        # from its own site-packages, not from this checkout.
        shown = subprocess.run(
            [str(venv_python), "-c", "import engine.io, importlib.metadata as m; print(m.version('litesrl'), engine.io.__file__)"],
            capture_output=True, text=True, cwd=tmp_path, check=True,
        ).stdout.split()
        assert shown[0] == local_version()
        assert shown[1].startswith(str(tmp_path / "node-n1" / "venv")) and "site-packages" in shown[1]

        # A second deploy keeps the venv and reinstalls; check now finds litesrl installed.
        [again] = await fleet.each(lambda conn: deploy_node(conn, wheel))
        assert again.ok and again.value.created_venv is False
        [checked] = await fleet.each(check_node)
        assert checked.value.litesrl == local_version()
        assert not any("litesrl" in p for p in checked.value.problems)


async def test_deploy_reports_a_python_that_cannot_make_a_venv(sshd, trusted, tmp_path, make_inventory):
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory())
    broken = replace(inv.nodes[0], python="/bin/false")
    async with Fleet(inv, [broken]) as fleet:
        [outcome] = await fleet.each(lambda conn: deploy_node(conn, wheel))
    assert not outcome.ok
    assert outcome.error == f"creating the venv {tmp_path / 'node-n1' / 'venv'} with /bin/false failed (exit 1): no output"
