"""The board wheelhouse: wheels of what the board runtime may use beyond JetPack, fetched for the board's platform.

``litesrl nodes bundle`` runs ``pip download`` for another platform (aarch64 and JetPack's Python by
default) where a package index is reachable, into ``$XDG_CACHE_HOME/litesrl/wheelhouse/<machine>-py<X.Y>``;
the folder is kept, so an offline rack is deployed from it later. ``deploy`` uploads the folder matching
each board and installs from it with ``--no-index``. Everything in it is optional: without it the
agent, telemetry (from /proc) and the profiler still run on JetPack alone.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from console.errors import FleetError
from console.fleet.wheel import PROJECT_ROOT, project_metadata

REQUIREMENTS_FILE = "requirements.txt"
"""The wheelhouse's list of what it was built for; deploy installs each line."""

DEFAULT_MACHINE = "aarch64"
"""Jetson boards."""

DEFAULT_PYTHON = "3.10"
"""JetPack 6's Python (the oldest litesrl supports)."""

# pip's platform tags for a Linux machine: manylinux wheels first, then plain linux ones.
_PLATFORMS = ("manylinux2014_{m}", "manylinux_2_17_{m}", "manylinux_2_28_{m}", "linux_{m}")


@dataclass(frozen=True)
class Wheelhouse:
    """A bundle folder and what it holds."""

    folder: Path
    """Where the wheels are."""
    requirements: tuple[str, ...]
    """What it was built for (the ``board`` extra of pyproject.toml by default)."""
    wheels: tuple[Path, ...]
    """The wheel files."""


def wheelhouse_root() -> Path:
    """``$XDG_CACHE_HOME/litesrl/wheelhouse`` (``~/.cache/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "litesrl" / "wheelhouse"


def wheelhouse_dir(tag: str, root: Path | None = None) -> Path:
    """The folder for boards of ``tag`` (``aarch64-py3.10``, see ``BoardPython.tag``)."""
    return (root or wheelhouse_root()) / tag


def board_requirements(project_root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """The ``board`` optional dependencies of pyproject.toml: what the board runtime uses when present."""
    extras = project_metadata(project_root).get("project", {}).get("optional-dependencies", {})
    return tuple(extras.get("board", ()))


def read_wheelhouse(folder: Path) -> Wheelhouse | None:
    """The wheelhouse in ``folder``, or None when there is none."""
    listed = folder / REQUIREMENTS_FILE
    if not listed.is_file():
        return None
    lines = [line.strip() for line in listed.read_text(encoding="utf-8").splitlines()]
    return Wheelhouse(folder, tuple(line for line in lines if line and not line.startswith("#")),
                      tuple(sorted(folder.glob("*.whl"))))


async def build_wheelhouse(machine: str = DEFAULT_MACHINE, python: str = DEFAULT_PYTHON, *,
                           requirements: tuple[str, ...] | None = None, root: Path | None = None,
                           index_url: str | None = None, find_links: Path | None = None,
                           no_index: bool = False) -> Wheelhouse:
    """Download binary wheels of ``requirements`` for ``machine`` and CPython ``python`` into the wheelhouse.

    Dependencies are not followed: the board has numpy (the only one they need) from JetPack.
    Raises :class:`FleetError` with pip's reason when a wheel cannot be had (no index reachable, or
    none built for that platform).
    """
    if not re.fullmatch(r"[A-Za-z0-9_]+", machine):
        raise FleetError(f"--machine {machine!r} is not a machine name such as aarch64 or x86_64")
    if not re.fullmatch(r"3\.\d+", python):
        raise FleetError(f"--python {python!r} must be a Python version such as 3.10")
    wanted = requirements if requirements is not None else board_requirements()
    if not wanted:
        raise FleetError("nothing to bundle: pyproject.toml has no `board` optional dependencies")
    folder = wheelhouse_dir(f"{machine}-py{python}", root)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted bundle left
    partial.mkdir(parents=True)
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--quiet",
            "--only-binary=:all:", "--no-deps", "--implementation", "cp", "--python-version", python,
            "--dest", str(partial)]
    for platform in _PLATFORMS:
        argv += ["--platform", platform.format(m=machine)]
    if index_url:
        argv += ["--index-url", index_url]
    if find_links is not None:
        argv += ["--find-links", str(find_links)]
    if no_index:
        argv.append("--no-index")
    process = await asyncio.create_subprocess_exec(*argv, *wanted, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT)
    output, _ = await process.communicate()
    if process.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "no output")
        raise FleetError(f"bundling {', '.join(wanted)} for {machine}/Python {python} failed "
                         f"(an index must be reachable): {reason.removeprefix('ERROR: ')}")
    (partial / REQUIREMENTS_FILE).write_text("\n".join(wanted) + "\n", encoding="utf-8")
    # The finished folder replaces the old one in one rename: an interrupted bundle leaves it intact.
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        os.replace(folder, old)
        os.replace(partial, folder)
        shutil.rmtree(old)
    else:
        os.replace(partial, folder)
    result = read_wheelhouse(folder)
    assert result is not None
    return result
