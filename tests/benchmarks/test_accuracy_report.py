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


def _finish(args: argparse.Namespace, budget: str, method: str, linear: float | dict, *, seeds: int | None = None,
            recipe: str = "rsscn7") -> None:
    settings = accuracy.run_settings(accuracy.RECIPES[recipe], budget, args)
    if seeds is not None:
        settings["seeds"] = seeds
    scores = linear if isinstance(linear, dict) else {
        "linear": [linear] * 5, "knn": [linear - 0.05] * 5, "random_linear": [0.4] * 5, "random_knn": [0.3] * 5}
    run = {"checkpoint": "c.pt", "steps": 10, "seconds": 1.0, "loss": -0.5, "collapse": 0.02, "probe": {"0.2": scores}}
    FinishedRuns(args.records / recipe / budget, settings).put(method, run)


@pytest.fixture
def args(tmp_path: Path) -> argparse.Namespace:
    args = _args(tmp_path)
    datasets = args.shared / "datasets"
    _images(datasets / "rsscn7_pool128", 3)
    for name in ("field", "forest"):
        _images(datasets / "rsscn7" / name, 2)
    for name in ("2S1", "T72"):
        _images(datasets / "mstar_soc10" / name, 3)
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


def test_two_recipes_on_one_dataset_are_kept_apart_and_named(args: argparse.Namespace, tmp_path: Path) -> None:
    for budget, mild, strong in (("15min", 0.69, 0.67), ("60min", 0.70, 0.74)):
        _finish(args, budget, "litesrl", mild, recipe="mstar")
        _finish(args, budget, "litesrl", strong, recipe="mstar-strong")
    results = accuracy.gather(args)
    assert [key for key in results if key[0].startswith("mstar")] == [
        ("mstar", "15min"), ("mstar", "60min"), ("mstar-strong", "15min"), ("mstar-strong", "60min")]
    text = accuracy.report(results, args)
    assert "| mstar-strong | 60min | 10 | 74.0 ± 0.0 | +34.0 ± 0.0 |" in text
    assert "| mstar | 60min | 10 | 70.0 ± 0.0 | +30.0 ± 0.0 |" in text
    assert "**mstar_soc10**, recipe `mstar-strong`, 60min" in text and "**mstar_soc10**, 60min" in text
    assert accuracy.plot_curve(results, 0.2, tmp_path / "curve.png")


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


def test_several_label_fractions_give_a_row_each_and_a_pool_part_is_counted(args: argparse.Namespace) -> None:
    args.fractions = [0.2, 0.5]
    settings = accuracy.run_settings(accuracy.RECIPES["mstar-half"], "15min", args)
    scores = {f: {"linear": [a] * 5, "knn": [a] * 5, "random_linear": [r] * 5, "random_knn": [r] * 5}
              for f, a, r in (("0.2", 0.68, 0.65), ("0.5", 0.85, 0.84))}
    run = {"checkpoint": "c.pt", "steps": 10, "seconds": 1.0, "loss": -0.5, "collapse": 0.02, "probe": scores}
    FinishedRuns(args.records / "mstar-half" / "15min", settings).put("litesrl", run)
    results = accuracy.gather(args)
    assert results["mstar-half", "15min"]["pool"] == 3  # half of the six chips
    text = accuracy.report(results, args)
    assert "| mstar-half | 15min | 10 | 20% | 68.0 ± 0.0 | +3.0 ± 0.0 |" in text
    assert "| mstar-half | 15min | 10 | 50% | 85.0 ± 0.0 | +1.0 ± 0.0 |" in text


def test_half_a_pool_is_a_fixed_random_half() -> None:
    import torch

    from engine.data.folder import ImageSet

    pool = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous(),
                    torch.full((10,), -1), [Path(f"{i}.jpg") for i in range(10)], [], "sar")
    first, again = accuracy.RECIPES["mstar-half"].pool_images(pool), accuracy.RECIPES["mstar-half"].pool_images(pool)
    assert len(first) == 5 and torch.equal(first.images, again.images)
    assert len(set(first.images[:, 0, 0, 0].tolist())) == 5  # distinct images, not one repeated
    assert accuracy.RECIPES["mstar"].pool_images(pool) is pool


def test_an_eval_table_kept_beside_the_runs_is_reported_with_its_command(args: argparse.Namespace) -> None:
    _finish(args, "15min", "litesrl", 0.48)
    kept = args.records / "labels-5-10"
    kept.mkdir()
    (kept / "protocol.md").write_text("**5% of the training labels**\n\n| encoder | linear |\n")
    (kept / "command.txt").write_text("litesrl eval --train-fraction 0.05\n")
    text = accuracy.report(accuracy.gather(args), args)
    assert "**`labels-5-10`**: `litesrl eval --train-fraction 0.05`" in text and "**5% of the training labels**" in text
    assert "--records " in text  # a rerun must point at these records, not the main table's
