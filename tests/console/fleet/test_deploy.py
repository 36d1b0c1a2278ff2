"""``deploy``: a real wheel of this checkout, uploaded over SFTP and pip-installed into a venv on loopback."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from console.fleet.bundle import build_wheelhouse
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
    assert wheel.parent.parent == tmp_path / "cache" and wheel.parent.name.startswith(f"{version}-")
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


@pytest.mark.timeout(600)  # three deploys: a minute alone, several on a loaded 2-core machine
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
        assert steps[:2] == ["python", "upload"] and steps[-1] == "done" and "install" in steps

        venv_python = tmp_path / "node-n1" / "venv" / "bin" / "python"
        assert (tmp_path / "node-n1" / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
        # The venv sees what the node's python sees (here this test venv, with torch), behind its own packages.
        assert "include-system-site-packages = false" in (tmp_path / "node-n1" / "venv" / "pyvenv.cfg").read_text()
        [pth] = (tmp_path / "node-n1" / "venv" / "lib").glob("python*/site-packages/litesrl-board.pth")
        assert str(Path(__import__("torch").__file__).parents[1]) in pth.read_text().splitlines()
        # The venv really imports the installed package (engine.io needs only the standard library),
        # from its own site-packages, not from this checkout.
        shown = subprocess.run(
            [str(venv_python), "-c", "import engine.io, importlib.metadata as m; "
                                     "print(m.version('litesrl'), engine.io.__file__)"],
            capture_output=True, text=True, cwd=tmp_path, check=True, env=_node_env(),
        ).stdout.split()
        assert shown[0] == local_version()
        assert shown[1].startswith(str(tmp_path / "node-n1" / "venv")) and "site-packages" in shown[1]

        # A second deploy keeps the venv and reinstalls; check now finds litesrl installed.
        (tmp_path / "node-n1" / "venv" / "left-by-the-old-venv").write_text("x")
        [again] = await fleet.each(lambda conn: deploy_node(conn, wheel))
        assert again.ok and again.value.created_venv is False
        assert (tmp_path / "node-n1" / "venv" / "left-by-the-old-venv").exists()
        [checked] = await fleet.each(check_node)
        assert checked.value.litesrl == local_version()
        assert not any("litesrl" in p or "venv" in p for p in checked.value.problems), checked.value.problems

    # Another `python` in the inventory (here a wrapper of the same interpreter): check says the venv
    # was not made from it, and deploy makes it afresh (as --rebuild does).
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    moved = replace(node, python=str(wrapper))
    async with Fleet(inv, [moved]) as fleet:
        [stale] = await fleet.each(check_node)
        assert any(f"not the inventory's python {wrapper}" in problem for problem in stale.value.problems)
        [changed] = await fleet.each(lambda conn: deploy_node(conn, wheel))
        assert changed.ok and changed.value.created_venv is True, changed.error
        assert not (tmp_path / "node-n1" / "venv" / "left-by-the-old-venv").exists()


async def test_deploy_reports_a_python_that_cannot_make_a_venv(sshd, trusted, tmp_path, make_inventory):
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory())
    broken = replace(inv.nodes[0], python="/bin/false")
    async with Fleet(inv, [broken]) as fleet:
        [outcome] = await fleet.each(lambda conn: deploy_node(conn, wheel))
    assert not outcome.ok
    assert outcome.error == "/bin/false does not run (exit 1): no output"


def _node_env() -> dict[str, str]:
    """The environment an SSH session on the node has: without this test run's PYTHONPATH."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


def _base_python() -> str:
    """This interpreter's base Python: no torch (the test venv holds it), like a board without JetPack's wheel."""
    return getattr(sys, "_base_executable", sys.executable)


async def test_deploy_refuses_a_python_without_torch_in_one_line(sshd, trusted, tmp_path, make_inventory):
    base = _base_python()
    if subprocess.run([base, "-c", "import torch"], capture_output=True).returncode == 0:
        pytest.skip("the base Python has torch")
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory())
    bare = replace(inv.nodes[0], python=base)
    async with Fleet(inv, [bare]) as fleet:
        [outcome] = await fleet.each(lambda conn: deploy_node(conn, wheel))
    assert not outcome.ok
    assert outcome.error.startswith(f"{base} cannot import torch (ModuleNotFoundError: No module named 'torch'); "
                                    "JetPack provides torch")
    assert "\n" not in outcome.error and "set `python` in the inventory" in outcome.error
    assert not (tmp_path / "node-n1" / "venv").exists()


def _tiny_wheel(folder: Path) -> Path:
    """A real wheel of a one-module project, built offline: the stand-in for psutil in an offline wheelhouse."""
    project = folder / "src"
    project.mkdir(parents=True)
    (project / "boardextra.py").write_text("ANSWER = 42\n")
    (project / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\nbuild-backend = '
                                            '"setuptools.build_meta"\n[project]\nname = "boardextra"\n'
                                            'version = "1.0"\n[tool.setuptools]\npy-modules = ["boardextra"]\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(folder / "links"), str(project)], check=True)
    return folder / "links"


async def test_the_wheelhouse_travels_with_deploy_and_installs_without_an_index(sshd, trusted, tmp_path,
                                                                              make_inventory, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing answers there
    links = _tiny_wheel(tmp_path / "mirror")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    house = await build_wheelhouse(platform.machine(), python, requirements=("boardextra",), root=tmp_path / "house",
                                   find_links=links, no_index=True)
    assert house.folder == tmp_path / "house" / f"{platform.machine()}-py{python}"
    assert [w.name for w in house.wheels] == ["boardextra-1.0-py3-none-any.whl"]
    wheel = await build_wheel(cache_dir=tmp_path / "cache")
    inv = load_inventory(make_inventory())
    async with Fleet(inv) as fleet:
        [outcome] = await fleet.each(lambda conn: deploy_node(conn, wheel, wheelhouse_root=tmp_path / "house"))
    assert outcome.ok, outcome.error
    assert (outcome.value.extras, outcome.value.missing) == (("boardextra",), ())
    venv_python = tmp_path / "node-n1" / "venv" / "bin" / "python"
    shown = subprocess.run([str(venv_python), "-c", "import boardextra; print(boardextra.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert shown.startswith(str(tmp_path / "node-n1" / "venv"))


async def test_bundle_without_a_reachable_index_says_so(tmp_path):
    from console.errors import FleetError

    with pytest.raises(FleetError, match=r"bundling psutil for aarch64/Python 3.10 failed \(an index must be reachable\)"):
        await build_wheelhouse("aarch64", "3.10", requirements=("psutil",), root=tmp_path,
                               index_url="http://127.0.0.1:9/simple")
    assert list(tmp_path.iterdir()) == []


async def test_changed_code_gets_a_new_wheel_though_the_version_stays(tmp_path):
    copy = tmp_path / "checkout"
    copy.mkdir()
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", copy / "pyproject.toml")
    for package in ("engine", "nodes", "console", "assets"):
        shutil.copytree(PROJECT_ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    first = await build_wheel(cache_dir=tmp_path / "cache", project_root=copy)
    (copy / "nodes" / "agent_main.py").write_text((copy / "nodes" / "agent_main.py").read_text() + "# edited\n")
    second = await build_wheel(cache_dir=tmp_path / "cache", project_root=copy)
    assert second.parent != first.parent and second.name == first.name
    assert b"# edited" in zipfile.ZipFile(second).read("nodes/agent_main.py")
