"""``deploy``: give a node's agent a venv that sees the board's torch, with this checkout's wheel and the wheelhouse.

Needs no package index on the node. The board's ``python`` is probed first: one that cannot import
torch is refused (JetPack's CUDA torch cannot come from PyPI). The venv is made without system
site-packages and given a ``.pth`` naming the folders ``python`` imports from, so it sees exactly
what ``python`` sees (JetPack's system Python, or a venv or conda env holding torch) behind its own
packages. The litesrl wheel is installed ``--no-deps --no-index``; the wheelhouse for the board's
platform (``litesrl nodes bundle``), when there is one, is uploaded and installed ``--no-index`` too.
A marker in the venv records which ``python`` made it: a different ``python``, or ``rebuild``, makes a
fresh venv.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from console.errors import FleetError
from console.fleet.board_python import BoardPython, probe_python, require_trainable
from console.fleet.bundle import read_wheelhouse, wheelhouse_dir
from console.fleet.probe_script import BOARD_MODULES
from console.fleet.remote import sh_join, sh_quote
from console.fleet.ssh import CommandFailed, CommandResult, NodeConnection

INSTALL_TIMEOUT = 900.0
"""Seconds allowed for venv creation and pip on a slow board."""

MARKER = "litesrl-deploy.json"
"""File in the venv recording the ``python`` it was made from and what was installed."""

BASE_PTH = "litesrl-board.pth"
"""The venv's ``.pth`` naming the folders the board's ``python`` imports from."""

Progress = Callable[[str, int, int], None]
"""``progress(step, done, total)``: the step name, with bytes done/total while uploading (else 0, 0)."""


@dataclass(frozen=True)
class DeployResult:
    """What ``deploy`` left on one node."""

    node: str
    """Inventory name."""
    version: str
    """litesrl version now installed in the venv."""
    venv: str
    """The venv on the node."""
    wheel: str
    """Path of the uploaded wheel on the node."""
    created_venv: bool
    """True when this deploy created the venv (first deploy, another ``python``, or ``rebuild``)."""
    python: str = ""
    """Version of the board's Python, and its torch, e.g. ``3.10.12, torch 2.3.0``."""
    extras: tuple[str, ...] = ()
    """Wheelhouse requirements installed."""
    missing: tuple[str, ...] = ()
    """What was not installed, one line each (no wheelhouse for this board, or no wheel in it)."""


async def deploy_node(conn: NodeConnection, wheel: Path, *, with_deps: bool = False, rebuild: bool = False,
                      wheelhouse_root: Path | None = None, progress: Progress | None = None) -> DeployResult:
    """Probe the board's Python, (re)make the venv, install the wheel and the board's wheelhouse, verify.

    The wheel is reinstalled even when the version is unchanged, since the code may have changed.
    ``with_deps`` also lets pip install litesrl's dependencies from an index the node reaches.
    Raises :class:`FleetError` naming the step that failed.
    """
    report = progress or (lambda step, done, total: None)
    node, layout = conn.node, conn.layout
    report("python", 0, 0)
    board = await probe_python(conn)
    require_trainable(node.name, board)
    house = read_wheelhouse(wheelhouse_dir(board.tag, wheelhouse_root))

    remote_wheel = f"{layout.wheels}/{wheel.name}"
    extras_dir = f"{layout.wheels}/{board.tag}"
    uploads = [(wheel, remote_wheel)] + [(w, f"{extras_dir}/{w.name}") for w in (house.wheels if house else ())]
    total = sum(local.stat().st_size for local, _ in uploads)
    report("upload", 0, total)
    await _step(conn, f"creating {layout.wheels}", f"mkdir -p {sh_quote(layout.wheels)} {sh_quote(extras_dir)}")
    sent = 0
    for local, remote in uploads:
        def uploaded(done: int, _size: int, base: int = sent) -> None:
            report("upload", base + done, total)

        await conn.upload(local, remote, uploaded)
        sent += local.stat().st_size

    report("venv", 0, 0)
    created = await _ensure_venv(conn, board, rebuild)

    report("install", 0, 0)
    pip = [layout.venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet"]
    await _step(conn, f"installing {wheel.name}",
                sh_join(pip + ["--force-reinstall", "--no-deps", "--no-index", remote_wheel]))
    installed, missing = [], []
    if house is None:
        missing.append(f"no wheelhouse for {board.tag} here (optional: `litesrl nodes bundle --machine "
                       f"{board.machine} --python {board.tag.rsplit('py', 1)[1]}` where an index is reachable)")
    for requirement in house.requirements if house else ():
        result = await conn.run(sh_join(pip + ["--no-deps", "--no-index", "--find-links", extras_dir, requirement]),
                                timeout=INSTALL_TIMEOUT, check=False)
        if result.exit_status == 0:
            installed.append(requirement)
        else:
            missing.append(f"{requirement}: no wheel for {board.tag} in the wheelhouse")
    if with_deps:
        await _step(conn, "installing the dependencies", sh_join(pip + [remote_wheel]))

    report("verify", 0, 0)
    version = await _verify(conn)
    expected = wheel.name.split("-")[1]
    if version != expected:
        raise FleetError(f"{node.name}: after install the venv reports litesrl {version!r}, expected {expected}")
    marker = {"python": node.python, "executable": board.executable, "wheel": wheel.parent.name,
              "extras": installed}
    await _step(conn, "recording the deploy", _write_file(f"{layout.venv}/{MARKER}", json.dumps(marker)))
    report("done", 0, 0)
    return DeployResult(node.name, version, layout.venv, remote_wheel, created, f"{board.version}, torch {board.torch}",
                        tuple(installed), tuple(missing))


async def read_marker(conn: NodeConnection) -> dict | None:
    """The venv's deploy record, or None when the venv was not made by this deploy (or is absent)."""
    result = await conn.run(f"cat {sh_quote(conn.layout.venv + '/' + MARKER)}", check=False)
    try:
        return json.loads(result.stdout) if result.exit_status == 0 else None
    except json.JSONDecodeError:
        return None


async def _ensure_venv(conn: NodeConnection, board: BoardPython, rebuild: bool) -> bool:
    """Keep the venv when the same ``python`` made it, else make it afresh; returns True when made."""
    node, layout = conn.node, conn.layout
    marker = await read_marker(conn)
    same = marker is not None and (marker.get("python"), marker.get("executable")) == (node.python, board.executable)
    if same and not rebuild:
        probe = await conn.run(f"test -x {sh_quote(layout.venv_python)}", check=False)
        if probe.exit_status == 0:
            return False
    await _step(conn, f"removing the old venv {layout.venv}", f"rm -rf {sh_quote(layout.venv)}")
    await _step(conn, f"creating the venv {layout.venv} with {node.python}",
                sh_join([node.python, "-m", "venv", layout.venv]))
    # The .pth goes where the venv's own packages go; site appends its folders after them.
    site = (await _step(conn, "locating the venv's site-packages", sh_join(
        [layout.venv_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]))).stdout.strip()
    await _step(conn, "linking the board's packages", _write_file(f"{site}/{BASE_PTH}", "\n".join(board.paths)))
    return True


async def _verify(conn: NodeConnection) -> str:
    """Import the board runtime (what ``check`` probes) in the venv, from its workdir, not a source folder;
    returns litesrl's version."""
    layout = conn.layout
    script = ("import importlib, importlib.metadata as m\n"
              f"for name in {BOARD_MODULES!r}:\n"
              "    importlib.import_module(name)\n"
              "print(m.version('litesrl'))")
    result = await conn.run(f"cd {sh_quote(layout.workdir)} && {sh_join([layout.venv_python, '-c', script])}",
                            timeout=INSTALL_TIMEOUT, check=False)
    if result.exit_status != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise FleetError(f"{conn.node.name}: the venv cannot run the agent: {detail} (`litesrl nodes check "
                         f"{conn.node.name}` lists what is missing)")
    return result.stdout.strip().splitlines()[-1]


def _write_file(path: str, text: str) -> str:
    """A shell command writing ``text`` to ``path`` through a temporary file and a rename."""
    return f"printf '%s\\n' {sh_quote(text)} > {sh_quote(path)}.tmp && mv -f {sh_quote(path)}.tmp {sh_quote(path)}"


async def _step(conn: NodeConnection, what: str, command: str) -> CommandResult:
    try:
        return await conn.run(command, timeout=INSTALL_TIMEOUT)
    except CommandFailed as exc:
        raise FleetError(f"{conn.node.name}: {what} failed (exit {exc.exit_status}): {exc.detail}") from None
