"""Accuracy on real data: Lite-SRL vs the SimSiam configuration vs random init, freeze evaluation.

One command: ``.venv/bin/python benchmarks/accuracy.py [--budget 15min] [--datasets rsscn7 mstar]``.
For each dataset both models are pretrained from scratch with the same recipe and the same
wall-clock budget (the cosine schedule is fitted to the budget after the first steps, so the
slower model simply gets fewer steps), one after the other on an otherwise idle machine. Each
encoder, and a random-init encoder, is then scored by a linear probe on frozen features with 20 %
of the labels, over ``--seeds`` different label splits (mean ± sample std).

Recipes (why each choice, in README "Getting a real gain on a CPU budget"):
- rsscn7 (optical): pretrain on the 695 unlabelled 128 px pool images plus the 385 RSSCN7
  scenes without their labels, loaded at 96 px, 64 px views, batch 64, base lr 0.2 (peak 0.05),
  crop scale 0.2-1, 90° rotations; stratified split.
- mstar (SAR): pretrain on the 128 px chips without labels, 64 px views, batch 32, base lr 0.5,
  crop scale 0.5-1, rotations by any angle (targets are seen from every azimuth); block split of
  10 neighbouring files (neighbours are near-duplicates), the probe sees the centre 80 px.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from report import REPO, write_section

import torch  # noqa: E402  (after report, which puts the repository on sys.path)

from engine.augment import AugmentConfig  # noqa: E402
from engine.cwb.units import parse_duration_ms  # noqa: E402
from engine.data.folder import ImageSet, load_images, scan_labelled, scan_unlabelled  # noqa: E402
from engine.evaluate import EvalConfig, evaluate  # noqa: E402
from engine.model import ModelConfig  # noqa: E402
from engine.pretrain import PretrainConfig, Pretrainer, RunOptions  # noqa: E402

VARIANTS = ("litesrl", "simsiam")


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


RECIPES = {
    "rsscn7": Recipe("rsscn7", ("rsscn7_pool128", "rsscn7"), "optical", 96, 64, 0.2, (0.2, 1.0), "rot90", "stratified"),
    "mstar": Recipe("mstar_soc10", ("mstar_soc10",), "sar", 128, 32, 0.5, (0.5, 1.0), "any", "block", probe_center=80),
}


def pretrain(recipe: Recipe, variant: str, pool: ImageSet, budget_s: float, out: Path) -> dict:
    channels = 1 if recipe.modality == "sar" else 3
    config = PretrainConfig(
        model=ModelConfig(in_channels=channels, variant=variant), modality=recipe.modality,
        augment=AugmentConfig(size=recipe.view_size, crop_scale=recipe.crop_scale, rotation=recipe.rotation),
        batch_size=recipe.batch_size, steps=10**6, base_lr=recipe.base_lr)
    trainer = Pretrainer(config, pool, RunOptions(out_dir=out, workers=1, time_budget=budget_s))
    started = time.perf_counter()
    last_print = [started]

    def progress(metrics, total):
        if time.perf_counter() - last_print[0] > 60 or metrics.step == total:
            last_print[0] = time.perf_counter()
            print(f"  {variant} step {metrics.step}/{total} loss {metrics.loss:.3f} collapse {metrics.collapse_std:.4f}", flush=True)

    history = trainer.run(progress)
    tail = history[-20:]
    return {"checkpoint": str(trainer.checkpoint_path), "steps": trainer.step, "seconds": time.perf_counter() - started,
            "loss": statistics.mean(m.loss for m in tail), "collapse": history[-1].collapse_std, "model": config.model}


def probe(images: ImageSet, recipe: Recipe, seeds: int, checkpoint: str | None, model: ModelConfig) -> list[float]:
    return [evaluate(images, EvalConfig(split=recipe.split, seed=seed, image_size=recipe.view_size), checkpoint=checkpoint,
                     model_config=model).overall_accuracy for seed in range(seeds)]


def run_dataset(name: str, recipe: Recipe, args: argparse.Namespace) -> dict:
    datasets = args.shared / "datasets"
    pool = load_images(scan_unlabelled([datasets / part for part in recipe.pool]), recipe.modality, recipe.load_size)
    classes, records = scan_labelled(datasets / recipe.labelled)
    labelled = load_images(records, recipe.modality, recipe.load_size, classes)
    if recipe.probe_center:
        labelled = labelled.centre(recipe.probe_center)
    print(f"{name}: pool {len(pool)} images, labelled {len(labelled)} in {len(classes)} classes", flush=True)
    rows = {}
    for variant in VARIANTS:
        print(f"{name}: pretraining {variant} for {args.budget_s:.0f} s", flush=True)
        run = pretrain(recipe, variant, pool, args.budget_s, args.out / name / variant)
        run["accs"] = probe(labelled, recipe, args.seeds, run["checkpoint"], run["model"])
        print(f"  {variant}: {statistics.mean(run['accs']):.1%}", flush=True)
        rows[variant] = run
    accs = probe(labelled, recipe, args.seeds, None, ModelConfig(in_channels=1 if recipe.modality == "sar" else 3))
    rows["random init"] = {"accs": accs}
    print(f"  random init: {statistics.mean(accs):.1%}", flush=True)
    return {"pool": len(pool), "labelled": len(labelled), "rows": rows}


def mean_std(accs: list[float]) -> str:
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    return f"{100 * statistics.mean(accs):.1f} ± {100 * spread:.1f}"


def report(results: dict, args: argparse.Namespace) -> str:
    lines = [f"Freeze evaluation, 20 % labels, {args.seeds} label splits (mean ± std, %); each model pretrained for "
             f"{args.budget} of wall-clock time on this machine, one run at a time.", ""]
    for name, result in results.items():
        recipe = RECIPES[name]
        lines += [f"**{recipe.labelled}** ({recipe.modality}, {recipe.split} split; pretraining pool {result['pool']} images, "
                  f"probe on {result['labelled']} labelled images)", "",
                  "| encoder | steps | pretrain s | final loss | collapse std | accuracy % | vs random init |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        rows = result["rows"]
        random_mean = statistics.mean(rows["random init"]["accs"])
        for label, row in rows.items():
            accuracy = mean_std(row["accs"])
            if "steps" in row:
                gain = 100 * (statistics.mean(row["accs"]) - random_mean)
                cells = [row["steps"], f"{row['seconds']:.0f}", f"{row['loss']:.3f}", f"{row['collapse']:.4f}", accuracy, f"{gain:+.1f}"]
            else:
                cells = ["-", "-", "-", "-", accuracy, ""]
            lines.append(f"| {label} | " + " | ".join(str(cell) for cell in cells) + " |")
        lite, simsiam = (statistics.mean(rows[v]["accs"]) for v in VARIANTS)
        lines += ["", "Per split: " + "; ".join(f"{label} " + " ".join(f"{100 * a:.1f}" for a in row["accs"])
                                               for label, row in rows.items()), "",
                  f"Target (Lite-SRL clearly above random init, not below simsiam): "
                  f"Lite-SRL {100 * (lite - random_mean):+.1f} points over random init, {100 * (lite - simsiam):+.1f} over simsiam.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="15min", help="pretraining wall-clock budget per model (e.g. 15min, 300s)")
    parser.add_argument("--datasets", nargs="+", choices=sorted(RECIPES), default=sorted(RECIPES, reverse=True))
    parser.add_argument("--seeds", type=int, default=5, help="label splits per encoder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-accuracy")
    parser.add_argument("--no-write", action="store_true", help="print the table without touching BENCHMARKS.md")
    args = parser.parse_args()
    args.budget_s = parse_duration_ms(args.budget) / 1000
    torch.set_num_threads(args.threads)
    missing = [RECIPES[name].labelled for name in args.datasets if not (args.shared / "datasets" / RECIPES[name].labelled).is_dir()]
    if missing:
        raise SystemExit(f"error: datasets {', '.join(missing)} not found under {args.shared / 'datasets'} (use --shared)")
    results = {name: run_dataset(name, RECIPES[name], args) for name in args.datasets}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    body = report(results, args)
    print(body)
    if not args.no_write:
        write_section("Accuracy on real data: Lite-SRL vs SimSiam vs random init", "accuracy.py", body)


if __name__ == "__main__":
    main()
