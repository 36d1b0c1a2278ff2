"""A "JetPack" Python for the SSH tests: this interpreter's base Python seeing only torch, torchvision, numpy, pillow.

A Jetson's JetPack gives python3 with torch (and torchvision, numpy, pillow) and nothing of the
ground station's: no typer, rich, psutil, asyncssh or textual. This builds that on the test machine
without a package index: a venv of the base interpreter (no system site-packages), whose only
addition is a ``.pth`` naming a folder of symlinks to the files of those four distributions and of
what they require, taken from the running environment's metadata (RECORD).
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

JETPACK_DISTRIBUTIONS = ("torch", "torchvision", "numpy", "pillow")
"""What JetPack's Python offers beyond the standard library."""

GROUND_ONLY = ("typer", "rich", "psutil", "asyncssh", "textual")
"""Modules of the ground station a board must not need."""


def requirement_closure(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """``names`` and every distribution they require (markers evaluated here), each once."""
    from packaging.markers import Marker

    seen: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for requirement in dist.requires or ():
            spec, _, marker = requirement.partition(";")
            if marker and not Marker(marker).evaluate({"extra": ""}):
                continue
            todo.append(re.match(r"[A-Za-z0-9_.-]+", spec.strip()).group(0))
    return list(seen.values())


def top_level_entries(dist: metadata.Distribution) -> set[str]:
    """First path components of the files a distribution installed into site-packages."""
    return {file.parts[0] for file in dist.files or () if not file.parts[0].startswith("..")}


def make_board_python(root: Path) -> Path:
    """Create the board Python under ``root``; returns its interpreter."""
    base = Path(getattr(sys, "_base_executable", sys.executable))
    venv = root / "jetpack-python"
    subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
    shelf = root / "jetpack-site"
    shelf.mkdir()
    for dist in requirement_closure(JETPACK_DISTRIBUTIONS):
        site = Path(dist.locate_file(""))
        for entry in top_level_entries(dist):
            if (site / entry).exists() and not (shelf / entry).exists():
                (shelf / entry).symlink_to(site / entry)
    [site_packages] = (venv / "lib").glob("python*/site-packages")
    (site_packages / "jetpack.pth").write_text(f"{shelf}\n")
    return venv / "bin" / "python"
