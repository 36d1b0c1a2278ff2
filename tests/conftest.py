"""Shared fixtures: seeded randomness, an isolated home and config, paths to the shared real data."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LITESRL_SHARED", REPO_ROOT.parent / "shared"))
DATASETS = SHARED / "datasets"
TEGRASTATS_DIR = SHARED / "tegrastats"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (``./scripts/test`` runs a worker per core) each worker and the processes its tests
    start compute on one thread: two workers of two threads each on two cores would only contend."""
    if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = "1"
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolate(tmp_path_factory, monkeypatch):
    """Seed every RNG and point HOME/XDG at a temporary folder so tests never touch the user's files."""
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:
        pass
    torch = sys.modules.get("torch")  # seeded only where a test already loaded it: console tests stay torch-free
    if torch is not None:
        torch.manual_seed(0)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    for var in ("LITESRL_SECRET", "LITESRL_INVENTORY"):
        monkeypatch.delenv(var, raising=False)
    yield


def shared_dataset(name: str) -> Path:
    """Path of a dataset under ../shared/datasets, or skip the test with the reason."""
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real dataset {path} is absent (set LITESRL_SHARED to the shared folder)")
    return path


@pytest.fixture
def tegrastats_dir() -> Path:
    if not TEGRASTATS_DIR.is_dir():
        pytest.skip(f"tegrastats captures {TEGRASTATS_DIR} are absent (set LITESRL_SHARED)")
    return TEGRASTATS_DIR
