"""The litesrl wheel that ``deploy`` ships: built from this source checkout, cached per version and content."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import os
import shutil
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from console.errors import FleetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout this console runs from (holds pyproject.toml when it is one)."""

_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", ".pytest_cache")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/litesrl/wheels`` (``~/.cache/...`` when the variable is unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "litesrl" / "wheels"


def project_metadata(root: Path = PROJECT_ROOT) -> dict:
    """pyproject.toml of the checkout at ``root``; raises :class:`FleetError` when there is none."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FleetError(f"deploy needs a litesrl source checkout, but {root} has no pyproject.toml") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FleetError(f"cannot read {root / 'pyproject.toml'}: {exc}") from None
    return data


def local_version() -> str | None:
    """The litesrl version here: the checkout's pyproject version, else the installed package's."""
    try:
        return str(project_metadata(PROJECT_ROOT)["project"]["version"])
    except (FleetError, KeyError):
        try:
            return metadata.version("litesrl")
        except metadata.PackageNotFoundError:
            return None


async def build_wheel(*, rebuild: bool = False, cache_dir: Path | None = None,
                      project_root: Path = PROJECT_ROOT) -> Path:
    """The wheel of ``project_root`` as it is now, built with ``pip wheel --no-deps`` unless cached.

    Cached as ``<cache_dir>/<version>-<content>/litesrl-<version>-*.whl`` where ``<content>`` is a
    hash of every file the wheel is built from, so changed code gets a new wheel though the version
    stays; ``rebuild`` builds again anyway. The sources are copied to a temporary folder first so
    the build neither writes into the checkout nor packs stale files from an old ``build/``. Uses
    ``--no-build-isolation`` so it works offline with the setuptools installed here. Raises
    :class:`FleetError` with pip's last error line when the build fails.
    """
    project = project_metadata(project_root)
    version = str(project.get("project", {}).get("version", ""))
    if not version:
        raise FleetError(f"{project_root / 'pyproject.toml'} has no [project] version")
    with tempfile.TemporaryDirectory(prefix="litesrl-wheel-") as tmp:
        source, out = Path(tmp) / "src", Path(tmp) / "out"
        _stage_sources(project_root, project, source)
        target_dir = (cache_dir or default_cache_dir()) / f"{version}-{content_hash(source)}"
        cached = sorted(target_dir.glob(f"litesrl-{version}-*.whl"))
        if cached and not rebuild:
            log.info("using cached wheel %s", cached[-1])
            return cached[-1]
        target_dir.mkdir(parents=True, exist_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--disable-pip-version-check", "--quiet", "--wheel-dir", str(out), str(source),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        built = sorted(out.glob("litesrl-*.whl"))
        if process.returncode != 0 or not built:
            lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
            raise FleetError(f"building the litesrl wheel failed: {lines[-1] if lines else 'pip gave no output'}")
        for old in cached:
            old.unlink()
        final = target_dir / built[0].name
        # Same filesystem as the cache after this copy, so the rename is atomic: never a half wheel.
        partial = target_dir / (built[0].name + ".partial")
        shutil.copyfile(built[0], partial)
        os.replace(partial, final)
    log.info("built %s", final)
    return final


def content_hash(folder: Path) -> str:
    """12 hex digits of SHA-256 over every file under ``folder`` (relative path and bytes, in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _stage_sources(root: Path, project: dict, dest: Path) -> None:
    """Copy pyproject.toml, the README/licence and the packages setuptools will find into ``dest``."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in"):
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    patterns = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include")
    for entry in sorted(root.iterdir()):
        if not entry.is_dir() or not (entry / "__init__.py").is_file():
            continue
        if patterns is None or any(fnmatch.fnmatch(entry.name, p) for p in patterns):
            shutil.copytree(entry, dest / entry.name, ignore=_SKIP)
