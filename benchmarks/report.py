"""Writing a benchmark's result into BENCHMARKS.md: one section per benchmark, replaced on rerun; the finished
runs behind a long benchmark's tables, kept in the repository."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "BENCHMARKS.md"
RESULTS = REPO / "benchmarks" / "results"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from engine.io import atomic_write_json, atomic_write_text  # noqa: E402


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run headless), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path: Path, dpi: int = 110) -> None:
    """Write ``figure`` to ``path`` under a temporary name, then rename: a kept drawing is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.png")
    figure.savefig(partial, dpi=dpi, bbox_inches="tight")
    pyplot().close(figure)
    os.replace(partial, path)


def machine(load: bool = True) -> str:
    """One line describing this machine and the software versions that matter for the figures (and, with
    ``load``, the load average now: whether the figures were measured on a quiet machine)."""
    parts = [platform.platform(), platform.processor() or platform.machine(), f"{os.cpu_count()} CPUs",
             f"Python {platform.python_version()}"]
    torch = sys.modules.get("torch")
    if torch is not None:
        parts.append(f"torch {torch.__version__}")
        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    if load:
        parts.append(f"load average {os.getloadavg()[0]:.2f} at the end")
    return ", ".join(parts)


def command(script: str) -> str:
    """The command line that reproduces this run."""
    return f"python benchmarks/{script}" + "".join(f" {arg}" for arg in sys.argv[1:])


def write_section(title: str, script: str, body: str) -> None:
    """Replace (or add) the ``## title (date)`` section of BENCHMARKS.md with ``body``.

    Sections are keyed by title, so rerunning a benchmark updates its figures instead of piling up
    stale copies. The file is rewritten atomically.
    """
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "# Benchmarks\n"
    header = f"## {title} ({datetime.date.today().isoformat()})"
    section = f"{header}\n\n- command: `{command(script)}`\n- machine: {machine()}\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)} \(\d{{4}}-\d{{2}}-\d{{2}}\)\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(BENCHMARKS, text.rstrip("\n") + "\n")


def slug(label: str) -> str:
    """``label`` as a file or folder name (no spaces, no commas)."""
    return label.replace(" ", "-").replace(",", "")


class FinishedRuns:
    """The runs of a long benchmark already trained and probed under ``settings``, one JSON file per run.

    They live in the repository (``benchmarks/results/``), not beside the checkpoints in ``runs/``: a table
    that took hours of an idle machine is rebuilt from them on any clone (``--report-only``), and a stopped
    command resumes after them. A run stored under other settings is not returned (and not reported).
    """

    def __init__(self, folder: Path, settings: dict) -> None:
        self.folder, self.settings = folder, json.loads(json.dumps(settings))  # as stored: tuples are lists

    def path(self, key: str) -> Path:
        return self.folder / f"{slug(key)}.json"

    def record(self, key: str) -> dict | None:
        """The whole stored record of ``key`` (settings, machine, date, run) when made with these settings."""
        path = self.path(key)
        if not path.is_file():
            return None
        stored = json.loads(path.read_text())
        return stored if stored.get("settings") == self.settings else None

    def get(self, key: str) -> dict | None:
        record = self.record(key)
        return None if record is None else record["run"]

    def put(self, key: str, run: dict) -> None:
        record = {"settings": self.settings, "machine": machine(load=False), "load_average": os.getloadavg()[0],
                  "recorded": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "run": run}
        atomic_write_json(self.path(key), record)

    def forget(self) -> None:
        """Drop every stored run (``--fresh``)."""
        for old in self.folder.glob("*.json") if self.folder.is_dir() else ():
            old.unlink()
