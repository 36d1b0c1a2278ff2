"""``deploy``: upload the litesrl wheel over SFTP and pip-install it into a venv on the node.

The venv is created with ``--system-site-packages`` so it reuses JetPack's CUDA-enabled torch, and
the wheel is installed with ``--no-deps`` by default: pip would otherwise fetch a CPU-only torch
from PyPI over JetPack's. ``check`` reports missing dependencies instead; ``with_deps`` lets pip
install them when the node has an index to install from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from console.errors import FleetError
from console.fleet.remote import sh_join, sh_quote
from console.fleet.ssh import CommandFailed, CommandResult, NodeConnection

INSTALL_TIMEOUT = 900.0
"""Seconds allowed for venv creation and pip on a slow board."""

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
    """True when this deploy created the venv."""


async def deploy_node(conn: NodeConnection, wheel: Path, *, with_deps: bool = False,
                      progress: Progress | None = None) -> DeployResult:
    """Upload ``wheel`` to the node, create the venv if needed, install the wheel and verify its version.

    The wheel is reinstalled even when the version is unchanged, since the code may have changed.
    Raises :class:`FleetError` naming the step that failed.
    """
    report = progress or (lambda step, done, total: None)
    node, layout = conn.node, conn.layout
    remote_wheel = f"{layout.wheels}/{wheel.name}"
    version = wheel.name.split("-")[1]

    report("upload", 0, wheel.stat().st_size)
    await _step(conn, f"creating {layout.wheels}", f"mkdir -p {sh_quote(layout.wheels)}")
    await conn.upload(wheel, remote_wheel, lambda done, total: report("upload", done, total))

    report("venv", 0, 0)
    venv_python = sh_quote(layout.venv_python)
    created = await _step(
        conn, f"creating the venv {layout.venv} with {node.python}",
        f"if [ -x {venv_python} ]; then echo kept; else "
        f"{sh_join([node.python, '-m', 'venv', '--system-site-packages', layout.venv])} && echo created; fi",
    )

    report("install", 0, 0)
    pip = [layout.venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet"]
    await _step(conn, f"installing {wheel.name}",
                sh_join(pip + ["--force-reinstall", "--no-deps", "--no-index", remote_wheel]))
    if with_deps:
        await _step(conn, "installing the dependencies", sh_join(pip + [remote_wheel]))

    report("verify", 0, 0)
    probe = "import importlib.metadata as m; print(m.version('litesrl'))"
    installed = (await _step(conn, "reading the installed version", sh_join([layout.venv_python, "-c", probe]))).stdout.strip()
    if installed != version:
        raise FleetError(f"{node.name}: after install the venv reports litesrl {installed!r}, expected {version}")
    report("done", 0, 0)
    return DeployResult(node.name, installed, layout.venv, remote_wheel, created.stdout.strip() == "created")


async def _step(conn: NodeConnection, what: str, command: str) -> CommandResult:
    try:
        return await conn.run(command, timeout=INSTALL_TIMEOUT)
    except CommandFailed as exc:
        raise FleetError(f"{conn.node.name}: {what} failed (exit {exc.exit_status}): {exc.detail}") from None
