"""The accuracy benchmark's report: built from every finished run made with the same settings, shortest budget first."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from report import FinishedRuns  # noqa: E402

import accuracy  # noqa: E402


def _args(tmp_path: Path, seeds: int = 5) -> argparse.Namespace:
    return argparse.Namespace(out=tmp_path / "runs", records=tmp_path / "records", shared=tmp_path / "shared",
                              fractions=[0.2], seeds=seeds, threads=2)


def _images(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{i}.jpg").write_bytes(b"not decoded by a scan")


def _finish(args: argparse.Namespace, budget: str, method: str, linear: float | dict, *, seeds: int | None = None) -> None:
    settings = accuracy.run_settings(accuracy.RECIPES["rsscn7"], budget, args)
    if seeds is not None:
        settings["seeds"] = seeds
    scores = linear if isinstance(linear, dict) else {
        "linear": [linear] * 5, "knn": [linear - 0.05] * 5, "random_linear": [0.4] * 5, "random_knn": [0.3] * 5}
    run = {"checkpoint": "c.pt", "steps": 10, "seconds": 1.0, "loss": -0.5, "collapse": 0.02, "probe": {"0.2": scores}}
    FinishedRuns(args.records / "rsscn7" / budget, settings).put(method, run)


@pytest.fixture
def args(tmp_path: Path) -> argparse.Namespace:
    args = _args(tmp_path)
    datasets = args.shared / "datasets"
    _images(datasets / "rsscn7_pool128", 3)
    for name in ("field", "forest"):
        _images(datasets / "rsscn7" / name, 2)
    return args


def test_runs_of_several_commands_are_gathered_by_budget_and_method(args: argparse.Namespace) -> None:
    _finish(args, "60min", "litesrl", 0.55)
    _finish(args, "15min", "simclr", 0.45)
    _finish(args, "15min", "litesrl", 0.48)
    _finish(args, "5min", "litesrl", 0.38)
    results = accuracy.gather(args)
    assert list(results) == [("rsscn7", "5min"), ("rsscn7", "15min"), ("rsscn7", "60min")]
    assert list(results["rsscn7", "15min"]["rows"]) == ["litesrl", "simclr"]  # the paper's order, not the file system's
    assert results["rsscn7", "15min"]["pool"] == 3 + 4 and results["rsscn7", "15min"]["labelled"] == 4
    text = accuracy.report(results, args)
    assert "| rsscn7 | 15min | 10 | 48.0 ± 0.0 | +8.0 ± 0.0 |" in text
    assert text.count("| random init |") == 3


def test_runs_made_with_other_settings_are_left_out(args: argparse.Namespace) -> None:
    _finish(args, "15min", "litesrl", 0.48)
    _finish(args, "15min", "byol", 0.41, seeds=3)
    rows = accuracy.gather(args)["rsscn7", "15min"]["rows"]
    assert list(rows) == ["litesrl"]


def test_the_curve_is_drawn_once_a_dataset_has_two_budgets(args: argparse.Namespace, tmp_path: Path) -> None:
    _finish(args, "15min", "litesrl", 0.48)
    png = tmp_path / "curve.png"
    assert not accuracy.plot_curve(accuracy.gather(args), 0.2, png) and not png.exists()
    _finish(args, "60min", "litesrl", 0.55)
    assert accuracy.plot_curve(accuracy.gather(args), 0.2, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_run_is_kept_as_one_json_record_with_its_settings_and_machine(args: argparse.Namespace) -> None:
    _finish(args, "15min", "litesrl", 0.48)
    record = json.loads((args.records / "rsscn7" / "15min" / "litesrl.json").read_text())
    assert record["settings"] == accuracy.run_settings(accuracy.RECIPES["rsscn7"], "15min", args)
    assert "CPUs" in record["machine"] and "load average" not in record["machine"] and record["run"]["steps"] == 10
    assert record["load_average"] >= 0  # apart: rows of one machine group together whatever its load
    assert not list(args.records.rglob("*.partial*"))  # written under a temporary name, then renamed


def test_a_run_kept_only_as_its_summary_is_reported_as_published(args: argparse.Namespace) -> None:
    summary = {"linear": [0.475, 0.02], "knn": [0.415, 0.021], "gain_linear": [0.056, 0.034],
               "gain_knn": [0.116, 0.034], "random_linear": [0.419, 0.029], "random_knn": [0.299, 0.015]}
    _finish(args, "15min", "litesrl", {"summary": summary})
    _finish(args, "15min", "simclr", 0.55)
    text = accuracy.report(accuracy.gather(args), args)
    assert "| rsscn7 | 15min | 10 | 47.5 ± 2.0 | +5.6 ± 3.4 | 41.5 ± 2.1 | +11.6 ± 3.4 |" in text
    assert "| simclr | 10 | 1 | -0.500 | 0.0200 | 55.0 ± 0.0 | 50.0 ± 0.0 | +15.0 ± 0.0 |" in text
    assert "1 of these rows are kept only as their published mean ± std" in text


def test_rows_made_on_different_machines_say_which_machine_made_them(args: argparse.Namespace) -> None:
    _finish(args, "15min", "litesrl", 0.48)
    assert "Machines (" not in accuracy.report(accuracy.gather(args), args)  # one machine: the section header names it
    _finish(args, "15min", "simclr", 0.55)
    record_path = args.records / "rsscn7" / "15min" / "simclr.json"
    record = json.loads(record_path.read_text())
    record["machine"] = "another board"
    record_path.write_text(json.dumps(record))
    text = accuracy.report(accuracy.gather(args), args)
    assert "another board: rsscn7 15min simclr." in text
