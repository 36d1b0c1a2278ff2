"""House style: ruff (lint + import order) and mypy (engine/ and nodes/) stay clean; both read pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def _run_tool(module: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module args`` from the repository root with this interpreter (so the venv's tool)."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_ruff_is_clean():
    result = _run_tool("ruff", "check", ".", timeout=120)
    assert result.returncode == 0, f"ruff check . failed:\n{result.stdout}{result.stderr}"


@pytest.mark.slow
@pytest.mark.timeout(900)  # a cold run analyses torch's stubs: minutes on a loaded 2-core machine
def test_mypy_is_clean():
    result = _run_tool("mypy", timeout=840)
    assert result.returncode == 0, f"mypy failed:\n{result.stdout}{result.stderr}"
