"""Accuracy on real data: Lite-SRL vs SimSiam (and the paper's other baselines) vs random init, freeze evaluation.

One command: ``.venv/bin/python benchmarks/accuracy.py [--budget 15min] [--datasets rsscn7 mstar]``;
the paper's Table 2 comparison: ``--methods litesrl simsiam simclr mocov2 byol swav`` (the last four
need ``pip install 'litesrl[baselines]'``); the budget curve: ``--budget 5min,15min,60min``.
For each dataset and budget every method is pretrained from scratch with the same recipe, data,
view size and wall-clock budget (the cosine schedule is fitted to the budget after the first steps,
so a slower method simply gets fewer steps), one after the other on an otherwise idle machine. Each
encoder is then scored by the logistic-regression and kNN probes on frozen features with
``--fractions`` of the labels over ``--seeds`` label splits, paired per split against one random-init
encoder (mean ± sample std; engine.protocol). Each finished run (pretraining and probes) is kept in
``--records``/<dataset>/<budget>/<method>.json (benchmarks/results/accuracy/, in the repository; checkpoints
stay in ``--out``) with its settings, so a stopped command resumes after its finished runs (``--fresh``
retrains them) and ``--report-only`` rebuilds the tables on any clone: the full Table 2 and budget curve
take hours of an idle machine.

Recipes (why each choice, in README "Getting a real gain on a CPU budget"):
- rsscn7 (optical): pretrain on the 695 unlabelled 128 px pool images plus the 385 RSSCN7
  scenes without their labels, loaded at 96 px, 64 px views, batch 64, base lr 0.2 (peak 0.05),
  crop scale 0.2-1, 90° rotations; stratified split.
- mstar (SAR): pretrain on the 128 px chips without labels, 64 px views, batch 32, base lr 0.5,
  crop scale 0.5-1, rotations by any angle (targets are seen from every azimuth); block split of
  10 neighbouring files (neighbours are near-duplicates), the probe sees the centre 80 px.
- mstar-strong, mstar-96, mstar-half: the mstar recipe with one change each, to find what flattens its budget
  curve: harsher SAR radiometry (``AugmentConfig.sar_radiometry="strong"``), 96 px views (and probe input), or
  a seeded random half of the pool (if half the chips buy the same accuracy, more chips of the kind would not help).
  Their runs are kept and reported under their own names (``--datasets mstar-96``).
The baselines keep each recipe's learning rate; their papers tune theirs for other batches.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from report import REPO, RESULTS, FinishedRuns, pyplot, save_figure, write_section

import torch  # noqa: E402  (after report, which puts the repository on sys.path)

from engine.augment import AugmentConfig  # noqa: E402
from engine.cwb.units import parse_duration_ms  # noqa: E402
from engine.data.folder import ImageSet, load_images, scan_labelled, scan_unlabelled  # noqa: E402
from engine.eval_config import EvalConfig  # noqa: E402
from engine.model import ModelConfig  # noqa: E402
from engine.pretrain import PretrainConfig, Pretrainer, RunOptions  # noqa: E402
from engine.protocol import mean_std, run_protocol  # noqa: E402

OURS = ("litesrl", "simsiam")
BASELINES = ("simclr", "mocov2", "byol", "swav")
CURVE_PNG = REPO / "assets" / "benchmarks" / "budget_curve.png"
SECTION = "Accuracy on real data: methods vs random init (protocol probes)"


@dataclass(frozen=True)
class Recipe:
    labelled: str
    pool: tuple[str, ...]
    modality: str
    load_size: int
    batch_size: int
    base_lr: float
    crop_scale: tuple[float, float]
    rotation: str
    split: str
    probe_center: int | None = None
    view_size: int = 64
    sar_radiometry: str = "mild"
    pool_fraction: float = 1.0  # a seeded random part of the pool: is the pool what limits the gain?

    def pool_size(self, total: int) -> int:
        return total if self.pool_fraction >= 1 else round(total * self.pool_fraction)

    def pool_images(self, pool: ImageSet) -> ImageSet:
        keep = self.pool_size(len(pool))
        if keep == len(pool):
            return pool
        return pool.subset(torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:keep])


RECIPES = {
    "rsscn7": Recipe("rsscn7", ("rsscn7_pool128", "rsscn7"), "optical", 96, 64, 0.2, (0.2, 1.0), "rot90", "stratified"),
    "mstar": Recipe("mstar_soc10", ("mstar_soc10",), "sar", 128, 32, 0.5, (0.5, 1.0), "any", "block", probe_center=80),
    "mstar-strong": Recipe("mstar_soc10", ("mstar_soc10",), "sar", 128, 32, 0.5, (0.5, 1.0), "any", "block",
                           probe_center=80, sar_radiometry="strong"),
    "mstar-96": Recipe("mstar_soc10", ("mstar_soc10",), "sar", 128, 32, 0.5, (0.5, 1.0), "any", "block",
                       probe_center=80, view_size=96),
    "mstar-half": Recipe("mstar_soc10", ("mstar_soc10",), "sar", 128, 32, 0.5, (0.5, 1.0), "any", "block",
                         probe_center=80, pool_fraction=0.5),
}


def pretrain(recipe: Recipe, method: str, pool: ImageSet, budget_s: float, out: Path) -> dict:
    channels = 1 if recipe.modality == "sar" else 3
    config = PretrainConfig(
        model=ModelConfig(in_channels=channels, variant=method if method in OURS else "litesrl"), modality=recipe.modality,
        augment=AugmentConfig(size=recipe.view_size, crop_scale=recipe.crop_scale, rotation=recipe.rotation,
                              sar_radiometry=recipe.sar_radiometry),
        batch_size=recipe.batch_size, steps=10**6, base_lr=recipe.base_lr)
    options = RunOptions(out_dir=out, workers=1, time_budget=budget_s)
    if method in OURS:
        trainer = Pretrainer(config, pool, options)
    else:
        from engine.baselines import BaselinePretrainer

        trainer = BaselinePretrainer(method, config, pool, options)
    started = time.perf_counter()
    last_print = [started]

    def progress(metrics, total):
        if time.perf_counter() - last_print[0] > 60 or metrics.step == total:
            last_print[0] = time.perf_counter()
            print(f"  {method} step {metrics.step}/{total} loss "
                  f"{metrics.loss:.3f} collapse {metrics.collapse_std:.4f}", flush=True)

    history = trainer.run(progress)
    tail = history[-20:]
    return {"checkpoint": str(trainer.checkpoint_path), "steps": trainer.step, "seconds": time.perf_counter() - started,
            "loss": statistics.mean(m.loss for m in tail), "collapse": history[-1].collapse_std, "model": config.model}


def probe(images: ImageSet, recipe: Recipe, args: argparse.Namespace, checkpoint: str, model: ModelConfig) -> dict:
    """Linear and kNN accuracies of ``checkpoint`` and of random init on the same splits, per fraction."""
    config = EvalConfig(split=recipe.split, image_size=recipe.view_size)
    result = run_protocol(images, config, args.fractions, args.seeds, checkpoint, None, model)
    return {table.fraction: {"linear": table.scores[result.encoder].linear, "knn": table.scores[result.encoder].knn,
                             "random_linear": table.scores["random init"].linear, "random_knn": table.scores["random init"].knn}
            for table in result.tables}


def run_dataset(name: str, recipe: Recipe, budget: str, args: argparse.Namespace) -> None:
    budget_s = parse_duration_ms(budget) / 1000
    settings = run_settings(recipe, budget, args)
    finished = FinishedRuns(args.records / name / budget, settings)
    todo = []
    for method in args.methods:
        if not args.fresh and finished.get(method) is not None:
            print(f"{name}: {method} at {budget} already finished ({finished.path(method)}); kept", flush=True)
        else:
            todo.append(method)
    if not todo:
        return  # nothing to train: the images are not decoded
    datasets = args.shared / "datasets"
    pool = recipe.pool_images(load_images(scan_unlabelled([datasets / part for part in recipe.pool]), recipe.modality,
                                          recipe.load_size))
    classes, records = scan_labelled(datasets / recipe.labelled)
    labelled = load_images(records, recipe.modality, recipe.load_size, classes)
    if recipe.probe_center:
        labelled = labelled.centre(recipe.probe_center)
    print(f"{name}: pool {len(pool)} images, labelled {len(labelled)} in {len(classes)} classes", flush=True)
    for method in todo:
        print(f"{name}: pretraining {method} for {budget_s:.0f} s", flush=True)
        run = pretrain(recipe, method, pool, budget_s, args.out / name / budget / method)
        run["probe"] = probe(labelled, recipe, args, run["checkpoint"], run.pop("model"))
        print(f"  {method}: " + ", ".join(f"{f:g}: {100 * statistics.mean(p['linear']):.1f} %" for f, p in run["probe"].items()),
              flush=True)
        finished.put(method, run)  # a stopped benchmark resumes after its finished runs


def run_settings(recipe: Recipe, budget: str, args: argparse.Namespace) -> dict:
    """What a finished run must have been made with to be reused (and reported) under ``args``."""
    return json.loads(json.dumps({"recipe": recipe.__dict__, "budget_s": parse_duration_ms(budget) / 1000,
                                  "fractions": args.fractions, "seeds": args.seeds, "threads": args.threads}))


def finished_run(runs: FinishedRuns, method: str) -> dict | None:
    """The stored run of ``method`` (its probe keyed by label fraction; the machine that made it), else None."""
    record = runs.record(method)
    if record is None:
        return None
    probe = {float(f): p for f, p in record["run"]["probe"].items()}
    return {**record["run"], "machine": record.get("machine", "not recorded"), "probe": probe}


def gather(args: argparse.Namespace) -> dict:
    """Every finished run under ``args.records`` made with these settings, by (dataset, budget), shortest budget first.

    The report is built from all of them, not only from this command's, so the full Table 2 and the budget
    curve accumulate over several commands (each takes hours on a small machine).
    """
    datasets = args.shared / "datasets"
    results = {}
    for name, recipe in RECIPES.items():
        folder = args.records / name
        budgets = [f.name for f in folder.glob("*") if f.is_dir()] if folder.is_dir() else []
        counts: dict[str, int] = {}
        for budget in sorted(budgets, key=parse_duration_ms):
            runs = FinishedRuns(folder / budget, run_settings(recipe, budget, args))
            rows = {m: run for m in OURS + BASELINES if (run := finished_run(runs, m)) is not None}
            if rows:
                counts = counts or {"pool": recipe.pool_size(len(scan_unlabelled([datasets / part for part in recipe.pool]))),
                                    "labelled": len(scan_labelled(datasets / recipe.labelled)[1])}
                results[(name, budget)] = {**counts, "rows": rows}
    return results


def stat(scores: dict, key: str) -> tuple[float, float]:
    """Mean and sample std over the splits of ``key``: ``linear``, ``knn``, ``random_linear``, ``random_knn``, or
    ``gain_linear`` / ``gain_knn`` (the per-split difference against random init).

    A run kept only as its published summary (``scores["summary"]``: [mean, std] per key) reports that.
    """
    if "summary" in scores:
        mean, std = scores["summary"][key]
        return mean, std
    if key.startswith("gain_"):
        probe = key.removeprefix("gain_")
        return mean_std([a - b for a, b in zip(scores[probe], scores[f"random_{probe}"])])
    return mean_std(scores[key])


def cell(scores: dict, key: str, signed: bool = False) -> str:
    mean, std = stat(scores, key)
    return f"{100 * mean:{'+' if signed else ''}.1f} ± {100 * std:.1f}"


def report(results: dict, args: argparse.Namespace) -> str:
    where = args.records.relative_to(REPO) if args.records.is_relative_to(REPO) else args.records
    lines = [f"Freeze evaluation (logistic-regression probe, C by cross-validation on the training part; kNN k=20), "
             f"{args.seeds} label splits, mean ± std %; each method pretrained for the stated wall-clock budget on an "
             f"otherwise idle machine, one run at a time. Random init: one network scored on the same splits; "
             f"\"vs random init\" is the paired per-split difference. The tables gather every finished run "
             f"under `{where}/` made with these settings; one row is reproduced by "
             f"`python benchmarks/accuracy.py --datasets D --methods M --budget B{elsewhere(args, where)}`.", ""]
    machines: dict[str, list[str]] = {}
    for (name, budget), result in results.items():
        for method, row in result["rows"].items():
            machines.setdefault(row["machine"], []).append(f"{name} {budget} {method}")
    if len(machines) > 1:
        lines += ["Machines (same kind, not the same speed: compare steps as well as accuracy): "
                  + "; ".join(f"{machine}: {', '.join(rows)}" for machine, rows in machines.items()) + ".", ""]
    summarised = sum("summary" in scores for result in results.values() for row in result["rows"].values()
                     for scores in row["probe"].values())
    if summarised:
        lines += [f"{summarised} of these rows are kept only as their published mean ± std (`summary` in their "
                  f"record): their per-split values were lost with the machine that ran them.", ""]
    lines += budget_curve(results, args.fractions)
    lines += kept_evaluations(args.records)
    for (name, budget), result in results.items():
        recipe = RECIPES[name]
        for fraction in args.fractions:
            called = "" if name == recipe.labelled.split("_")[0] else f", recipe `{name}`"
            lines += [f"**{recipe.labelled}**{called}, {budget}, {fraction:.0%} labels ({recipe.modality}, {recipe.split} split; "
                      f"pretraining pool {result['pool']} images, probe on {result['labelled']} labelled images)", "",
                      "| method | steps | pretrain s | final loss | collapse std | linear % | kNN % | vs random init (linear) |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|"]
            random_row = None
            for method, row in result["rows"].items():
                scores = row["probe"][fraction]
                lines.append(f"| {method} | {row['steps']} | {row['seconds']:.0f} | {row['loss']:.3f} | {row['collapse']:.4f} | "
                             f"{cell(scores, 'linear')} | {cell(scores, 'knn')} | {cell(scores, 'gain_linear', signed=True)} |")
                random_row = scores
            lines += [f"| random init | - | - | - | - | {cell(random_row, 'random_linear')} "
                      f"| {cell(random_row, 'random_knn')} | |", ""]
    return "\n".join(lines)


def main_table(records: Path) -> bool:
    """Whether ``records`` are the main table's (the others are experiments, reported apart)."""
    return records.resolve() == (RESULTS / "accuracy").resolve()


def elsewhere(args: argparse.Namespace, where: Path) -> str:
    """The flags that point a rerun at these records, when they are not the main table's."""
    if main_table(args.records):
        return ""
    return f" --records {where} --fractions {','.join(f'{f:g}' for f in args.fractions)}"


def kept_evaluations(records: Path) -> list[str]:
    """``litesrl eval`` tables kept beside the runs (``<records>/<name>/protocol.md`` with the ``command.txt``
    that made them): other label fractions of a kept checkpoint, without pretraining it again."""
    lines = []
    for table in sorted(records.glob("*/protocol.md")):
        command = (table.parent / "command.txt").read_text().strip() if (table.parent / "command.txt").is_file() else "?"
        lines += [f"**`{table.parent.name}`**: `{command}`", "", table.read_text().strip(), ""]
    return lines


def budget_curve(results: dict, fractions: list[float]) -> list[str]:
    """Lite-SRL's gain over random init against its pretraining budget: does it grow with compute?

    With several label fractions each run has a row per fraction: a gain that shrinks as labels grow says
    the probe, not the encoder, is what the extra labels improve."""
    curve = [(name, budget, result["rows"]["litesrl"]) for (name, budget), result in results.items()
             if "litesrl" in result["rows"]]
    if not curve:
        return []
    several = len(fractions) > 1
    labels = ", ".join(f"{f:.0%}" for f in fractions)
    lines = [f"**Budget curve** (Lite-SRL, {labels} labels)", "",
             "| recipe | budget | steps |" + (" labels |" if several else "")
             + " linear % | vs random init (linear) | kNN % | vs random init (kNN) |",
             "|---|---|---:|" + ("---:|" if several else "") + "---:|---:|---:|---:|"]
    for name, budget, row in curve:
        for fraction in fractions:
            scores = row["probe"][fraction]
            lines.append(f"| {name} | {budget} | {row['steps']} |" + (f" {fraction:.0%} |" if several else "")
                         + f" {cell(scores, 'linear')} | {cell(scores, 'gain_linear', signed=True)} "
                         f"| {cell(scores, 'knn')} | {cell(scores, 'gain_knn', signed=True)} |")
    return lines + [""]


def plot_curve(results: dict, fraction: float, path: Path) -> bool:
    """Draw Lite-SRL's linear-probe and kNN accuracy against the budget, one panel per dataset, one colour per
    recipe (random init in grey: it is the same network on the same probe whatever the recipe)."""
    curves: dict[str, dict[str, list[tuple[float, dict]]]] = {}
    for (name, budget), result in results.items():
        if "litesrl" in result["rows"]:
            points = curves.setdefault(RECIPES[name].labelled, {}).setdefault(name, [])
            points.append((parse_duration_ms(budget) / 60_000, result["rows"]["litesrl"]["probe"][fraction]))
    if not any(len(points) > 1 for recipes in curves.values() for points in recipes.values()):
        return False
    figure, panels = pyplot().subplots(1, len(curves), figsize=(5.5 * len(curves), 4.2), squeeze=False)
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:red")
    for axes, (dataset, recipes) in zip(panels[0], sorted(curves.items())):
        budgets: set[float] = set()
        for colour, (name, points) in zip(colours, sorted(recipes.items())):
            minutes = [m for m, _ in points]
            budgets.update(minutes)
            for key, probe, style in (("linear", "linear", "o-"), ("knn", "kNN", "s--")):
                stats = [stat(scores, key) for _, scores in points]
                axes.errorbar(minutes, [100 * m for m, _ in stats], yerr=[100 * s for _, s in stats], fmt=style,
                              capsize=3, color=colour, label=f"{name}, {probe}")
        # random init does not depend on the budget: one band per probe from the longest-budget point
        random_scores = max((points[-1] for points in recipes.values()), key=lambda point: point[0])[1]
        for key, probe, style in (("random_linear", "linear", ":"), ("random_knn", "kNN", "-.")):
            mean, _ = stat(random_scores, key)
            axes.axhline(100 * mean, color="grey", linestyle=style, linewidth=1, label=f"random init, {probe}")
        ticks = sorted(budgets)
        axes.set_xscale("log")
        axes.minorticks_off()
        axes.set_xticks(ticks, [f"{m:g} min" for m in ticks])
        axes.set_xlabel("pretraining budget (wall clock, 2 CPU cores)")
        axes.set_ylabel(f"accuracy %, {fraction:.0%} labels")
        axes.set_title(dataset, fontsize=10)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7)
    save_figure(figure, path)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="15min", help="pretraining wall-clock budget(s) per method, "
                                                          "comma-separated (e.g. 5min,15min,60min)")
    parser.add_argument("--datasets", nargs="+", choices=sorted(RECIPES), default=["rsscn7", "mstar"])
    parser.add_argument("--methods", nargs="+", choices=OURS + BASELINES, default=list(OURS))
    parser.add_argument("--fractions", default="0.2", help="label fractions, comma-separated (paper: 0.1,0.2,0.5)")
    parser.add_argument("--seeds", type=int, default=5, help="label splits per encoder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-accuracy", help="checkpoints")
    parser.add_argument("--records", type=Path, default=RESULTS / "accuracy",
                        help="where the finished runs are kept (in the repository by default)")
    parser.add_argument("--no-write", action="store_true", help="print the table without touching BENCHMARKS.md")
    parser.add_argument("--fresh", action="store_true", help="retrain runs that an earlier, stopped command finished")
    parser.add_argument("--report-only", action="store_true",
                        help="train nothing: rebuild the table from the finished runs under --out")
    args = parser.parse_args()
    args.fractions = [float(f) for f in args.fractions.split(",")]
    budgets = [b.strip() for b in args.budget.split(",") if b.strip()]
    torch.set_num_threads(args.threads)
    missing = [RECIPES[name].labelled for name in args.datasets
               if not (args.shared / "datasets" / RECIPES[name].labelled).is_dir()]
    if missing:
        raise SystemExit(f"error: datasets {', '.join(missing)} not found under {args.shared / 'datasets'} (use --shared)")
    if any(m in BASELINES for m in args.methods):
        try:
            import lightly  # noqa: F401
        except ImportError:
            raise SystemExit("error: the baselines need lightly: pip install 'litesrl[baselines]'") from None
    if not args.report_only:
        for budget in budgets:
            for name in args.datasets:
                run_dataset(name, RECIPES[name], budget, args)
    results = gather(args)
    if not results:
        raise SystemExit(f"error: no finished runs under {args.records} with these settings")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({f"{n} {b}": r for (n, b), r in results.items()}, indent=2,
                                                      default=str) + "\n")
    body = report(results, args)
    main_records = main_table(args.records)
    if not args.no_write and main_records and plot_curve(results, args.fractions[0], CURVE_PNG):
        body += f"\n![Budget curve: accuracy against pretraining time]({CURVE_PNG.relative_to(REPO)})\n"
    print(body)
    if not args.no_write:  # experiments kept under another --records get their own section
        title = SECTION if main_records else f"Accuracy experiments: {args.records.name}"
        write_section(title, "accuracy.py", body)


if __name__ == "__main__":
    main()
