"""Does DHP learn as well as one machine? Single-process pretraining vs fixed and dynamic chains, on real images.

One command: ``.venv/bin/python benchmarks/dhp_accuracy.py`` (not in CI: hours on a small machine).
Every run pretrains Lite-SRL/ResNet-18 with one recipe (``litesrl pretrain``'s: optical augmentations,
SGD with warm-up + cosine) on the same data (the 695-image RSSCN7 pool plus the 385 RSSCN7 scenes without
labels, as ``benchmarks/accuracy.py`` uses), the same seed and the same number of mini-batches
(``--steps``, at least 600):

- single-process ``pretrain`` (``engine.pretrain.Pretrainer``), and again with other seeds
  (``--single-seeds``): how far two single-machine runs of one recipe land apart is the noise floor
  every chain run's gap is read against;
- fixed chains (two chains of three on six emulated nodes) and dynamic chains (3/2/1), each averaging
  the replicas every ``--periods`` iterations (100: the paper; 10: a short period), real compute on
  every node (``litesrl train``'s path: ``console.cluster.training.run_training``), with the replicas'
  plain mean (the paper) and with their summed updates (``--averages equal,sum``;
  ``engine.dhp.averaging``), and dynamic chains with the average weighted by the mini-batches each
  replica trained;
- random init.

Each encoder is scored by ``litesrl eval``'s freeze probe (``engine.evaluate.evaluate`` with the CLI's
defaults: 20 % labels, 200 epochs, images at the view size) over ``--splits`` label splits (seeds
0..n-1), reported as mean +- std and per split. Also: wall-clock per run, the replicas' divergence
before each average, and one PNG with the loss curves of every run.

Every finished run (its training and its probe) is kept in ``--records`` (benchmarks/results/dhp_accuracy/,
in the repository; checkpoints stay in ``--out``) with the settings it ran under, so a command that was
stopped resumes after the last finished run (``--fresh`` starts over) and ``--report-only`` rebuilds the
table on any clone.

``--smoke`` runs the whole pipeline at a toy size (20 steps, batch 8, 32 px views) to prove it works: its
figures are not a result, it says so, and it never writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from report import REPO, RESULTS, FinishedRuns, pyplot, save_figure, slug, write_section

import torch  # noqa: E402  (after report, which puts the repository on sys.path)

from console.cluster import local  # noqa: E402
from console.cluster.training import TrainJob, run_training  # noqa: E402
from engine.augment import AugmentConfig  # noqa: E402
from engine.checkpoint import load_checkpoint  # noqa: E402
from engine.data.folder import load_images, scan_labelled, scan_unlabelled  # noqa: E402
from engine.data.images import is_image_file  # noqa: E402
from engine.dhp.events import read_events  # noqa: E402
from engine.evaluate import EvalConfig, evaluate  # noqa: E402
from engine.model import ModelConfig  # noqa: E402
from engine.pretrain import CHECKPOINT_NAME, PretrainConfig, Pretrainer, RunOptions  # noqa: E402

TITLE = "DHP accuracy: single process vs fixed and dynamic chains (real images)"
POOL = ("rsscn7_pool128", "rsscn7")
"""Pretraining data under ``--shared/datasets``, in this order; the probe is on ``rsscn7`` with its labels."""
AVERAGES = {"equal": "", "sum": ", summed"}
"""``--averages`` choices (``litesrl train --average-weighting``) and the suffix of their runs' labels."""
SMOKE = dict(steps=20, batch_size=8, image_size=32, load_size=48, periods="10,5", splits=2)


def combined_folder(datasets: Path, out: Path) -> Path:
    """One folder holding every pretraining image (symlinks), which the single process and every node read."""
    folder = out / "data"
    for index, name in enumerate(POOL, start=1):
        source = datasets / name
        for path in sorted(p for p in source.rglob("*") if p.is_file() and is_image_file(p)):
            link = folder / f"{index}_{name}" / path.relative_to(source)
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
    return folder


def recipe(args: argparse.Namespace) -> PretrainConfig:
    return PretrainConfig(model=ModelConfig(), modality="optical",
                          augment=AugmentConfig(size=args.image_size, crop_scale=(args.crop_scale, 1.0), rotation="rot90"),
                          batch_size=args.batch_size, steps=args.steps, base_lr=args.lr, warmup_steps=args.warmup_steps,
                          seed=args.seed)


SINGLE = "single process"


def single_label(seed: int, args: argparse.Namespace) -> str:
    return SINGLE if seed == args.seed else f"{SINGLE}, seed {seed}"


def run_single(config: PretrainConfig, data: Path, args: argparse.Namespace) -> dict:
    label = single_label(config.seed, args)
    images = load_images(scan_unlabelled([data]), "optical", args.load_size)
    print(f"{label}: {len(images)} images, {config.steps} steps", flush=True)
    folder = "single" if label == SINGLE else slug(label)
    trainer = Pretrainer(config, images, RunOptions(out_dir=args.out / folder, workers=1))
    began = time.monotonic()
    history = trainer.run()
    return {"label": label, "seconds": time.monotonic() - began, "losses": [m.loss for m in history],
            "checkpoint": str(trainer.checkpoint_path), "steps": trainer.step, "divergence": []}


def run_chains(label: str, mode: str, period: int, weighting: str, config: PretrainConfig, args: argparse.Namespace) -> dict:
    out = args.out / slug(label)
    job = TrainJob(cluster="local", mode=mode, iterations=config.steps, average_every=period, average_weighting=weighting,
                   batch_size=config.batch_size, image_size=config.augment.size, load_size=args.load_size,
                   crop_scale=config.augment.crop_scale[0], rotation=config.augment.rotation, lr=config.base_lr,
                   warmup_steps=config.warmup_steps, seed=config.seed, out=out)
    print(f"{label}: {config.steps} iterations", flush=True)
    began = time.monotonic()
    outcome = asyncio.run(run_training(job))
    seconds = time.monotonic() - began
    if outcome.result.reason:
        raise SystemExit(f"error: {label} stopped: {outcome.result.reason}")
    stored = load_checkpoint(out / CHECKPOINT_NAME)
    if stored["pretrain_config"] != config.to_dict():  # the same recipe as the single process, or the comparison is void
        raise SystemExit(f"error: {label} trained another recipe: {stored['pretrain_config']}")
    events = read_events(outcome.events)
    iterations = sorted((e for e in events if e.TYPE == "iteration"), key=lambda e: e.iteration)
    spread = [max(e.divergence) for e in events if e.TYPE == "averaging" and e.divergence]
    return {"label": label, "seconds": seconds, "losses": [e.loss for e in iterations], "checkpoint": str(out / CHECKPOINT_NAME),
            "steps": len(iterations), "divergence": spread, "stages": [len(s) for s in outcome.plan.stages]}


def probe(images, checkpoint: str | None, args: argparse.Namespace) -> list[float]:
    """``litesrl eval --data rsscn7 [--checkpoint C] --seed S`` for S in 0..splits-1 (the CLI's defaults)."""
    return [evaluate(images, EvalConfig(seed=seed, image_size=args.image_size), checkpoint,
                     ModelConfig(in_channels=3)).overall_accuracy for seed in range(args.splits)]


def plot(runs: list[dict], path: Path) -> None:
    figure, axis = pyplot().subplots(figsize=(9, 5))
    for run in runs:
        losses = torch.tensor(run["losses"])
        window = max(1, min(20, len(losses) // 10))
        smooth = losses.unfold(0, window, 1).mean(dim=1) if len(losses) >= window else losses
        axis.plot(range(window, window + len(smooth)), smooth.tolist(), label=run["label"], linewidth=1.2)
    axis.set_xlabel("mini-batch")
    axis.set_ylabel("loss (negative cosine, moving mean)")
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    save_figure(figure, path, dpi=120)


def mean_std(accs: list[float]) -> str:
    return f"{100 * statistics.mean(accs):.1f} ± {100 * (statistics.stdev(accs) if len(accs) > 1 else 0.0):.1f}"


def report(runs: list[dict], random_accs: list[float], args: argparse.Namespace, load: float | None, png: Path) -> str:
    single = next(r for r in runs if r["label"] == SINGLE)
    when = "runs trained by earlier commands" if load is None else f"load average before the run: {load:.2f}"
    lines = [f"- {when}; six emulated nodes (`litesrl cluster up`, one torch thread "
             f"each, real compute, no time stretching) and the single process ({args.threads} threads) on this machine",
             f"- recipe: ResNet-18, {args.steps} mini-batches of {args.batch_size}, {args.image_size} px views from "
             f"{args.load_size} px images, base lr {args.lr}, warm-up {args.warmup_steps}, seed {args.seed}; data "
             f"{' + '.join(POOL)} (labels unused); probe `litesrl eval` freeze, 20 % labels, {args.splits} splits",
             f"- loss curves: `{png.relative_to(REPO) if png.is_relative_to(REPO) else png}`", "",
             "| run | nodes per stage | mini-batches | wall s | final loss (mean of last 20) | divergence before averages "
             "(mean / max) | accuracy % | vs single | splits above random |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    single_mean = statistics.mean(single["accs"])
    for run in runs:
        tail = run["losses"][-20:]
        spread = f"{statistics.mean(run['divergence']):.4f} / {max(run['divergence']):.4f}" if run["divergence"] else "-"
        above = sum(a > r for a, r in zip(run["accs"], random_accs))
        lines.append(f"| {run['label']} | {'/'.join(map(str, run.get('stages', [1])))} | {run['steps']} | {run['seconds']:.0f} "
                     f"| {statistics.mean(tail):.4f} | {spread} | {mean_std(run['accs'])} "
                     f"| {100 * (statistics.mean(run['accs']) - single_mean):+.1f} | {above}/{len(random_accs)} |")
    lines.append(f"| random init | - | - | - | - | - | {mean_std(random_accs)} "
                 f"| {100 * (statistics.mean(random_accs) - single_mean):+.1f} | |")
    lines += ["", "Per split (%): " + "; ".join(f"{r['label']} " + " ".join(f"{100 * a:.1f}" for a in r["accs"]) for r in runs)
              + "; random init " + " ".join(f"{100 * a:.1f}" for a in random_accs), ""]
    verdict = []
    repeats = [r for r in runs[1:] if r["label"].startswith(SINGLE)]
    for run in repeats:
        verdict.append(f"- noise floor: {run['label']} lands {100 * (statistics.mean(run['accs']) - single_mean):+.1f} "
                       f"points from the seed-{args.seed} single process (the same recipe on one machine)")
    for run in runs[1:]:
        if run in repeats:
            continue
        gap = 100 * (single_mean - statistics.mean(run["accs"]))
        above = sum(a > r for a, r in zip(run["accs"], random_accs))
        ok = gap <= 1.5 and above >= max(1, len(random_accs) - 1)
        verdict.append(f"- {run['label']}: {'met' if ok else 'not met'} ({-gap:+.1f} points against the single process, "
                       f"above random init on {above} of {len(random_accs)} splits)")
    return "\n".join(lines + ["Target: within 1.5 points of the single process and above random init on at least 4 of 5 "
                              "splits.", ""] + verdict + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="Mini-batches of every run (at least 600 for a result).")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64, help="View size (benchmarks/accuracy.py's RSSCN7 recipe).")
    parser.add_argument("--load-size", type=int, default=96)
    parser.add_argument("--lr", type=float, default=0.2, help="Base learning rate (peak = lr x batch / 256).")
    parser.add_argument("--crop-scale", type=float, default=0.2)
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--periods", default="100,10", help="Averaging periods of the chain runs.")
    parser.add_argument("--modes", default="fixed,dynamic", help="Chain modes of the chain runs.")
    parser.add_argument("--averages", default="equal,sum",
                        help="How the chain runs combine replicas: equal (the paper's mean) and/or sum (summed updates).")
    parser.add_argument("--no-weighted", action="store_true",
                        help="Leave out the dynamic run whose average is weighted by each replica's mini-batches.")
    parser.add_argument("--single-seeds", default="1",
                        help="More single-process runs with these seeds (comma-separated; empty: none): the noise floor.")
    parser.add_argument("--splits", type=int, default=5, help="Label splits of the probe.")
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2, help="Torch threads of the single process.")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-dhp-accuracy")
    parser.add_argument("--records", type=Path, default=RESULTS / "dhp_accuracy",
                        help="Where the finished runs are kept (in the repository by default).")
    parser.add_argument("--smoke", action="store_true", help="A toy-size run proving the pipeline: not a result, never written.")
    parser.add_argument("--no-write", action="store_true", help="Print the table without touching BENCHMARKS.md.")
    parser.add_argument("--report-only", action="store_true",
                        help="Train nothing: report the runs finished so far (the missing ones are named).")
    parser.add_argument("--fresh", action="store_true", help="Forget the finished runs of an earlier, stopped command.")
    args = parser.parse_args()
    if args.smoke:
        for key, value in SMOKE.items():
            setattr(args, key, value)
        args.out = args.out / "smoke"
        args.records = args.out / "finished"  # never mixed with a real run's finished runs
    elif args.steps < 600:
        raise SystemExit("error: a result needs at least 600 mini-batches (use --smoke for a toy run)")
    datasets = args.shared / "datasets"
    missing = [name for name in POOL if not (datasets / name).is_dir()]
    if missing:
        raise SystemExit(f"error: datasets {', '.join(missing)} not found under {datasets} (use --shared)")
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    args.out.mkdir(parents=True, exist_ok=True)
    config = recipe(args)
    data = combined_folder(datasets, args.out)
    periods = [int(p) for p in args.periods.split(",")]
    averages = args.averages.split(",")
    if not set(averages) <= set(AVERAGES):
        raise SystemExit(f"error: --averages takes {' and/or '.join(AVERAGES)}, got {args.averages!r}")
    chain_runs = [(f"{mode}, every {period}{AVERAGES[average]}", mode, period, average)
                  for average in averages for period in periods for mode in args.modes.split(",")]
    if not args.no_weighted:
        chain_runs.append((f"dynamic, every {min(periods)}, weighted", "dynamic", min(periods), "batches"))
    classes, records = scan_labelled(datasets / "rsscn7")
    labelled = load_images(records, "optical", args.image_size, classes)
    finished = FinishedRuns(args.records, {**config.to_dict(), "load_size": args.load_size, "splits": args.splits,
                                           "nodes": args.nodes, "threads": args.threads})
    if args.fresh:
        finished.forget()

    def probed(run: dict) -> dict:
        run["accs"] = probe(labelled, run["checkpoint"], args)
        print(f"  {run['label']}: {mean_std(run['accs'])} % in {run['seconds']:.0f} s", flush=True)
        finished.put(run["label"], run)
        return run

    seeds = [int(s) for s in args.single_seeds.split(",") if s.strip()]
    labels = [SINGLE] + [single_label(seed, args) for seed in seeds] + [spec[0] for spec in chain_runs]
    if args.report_only:
        missing = [label for label in labels if finished.get(label) is None]
        if SINGLE in missing:
            raise SystemExit(f"error: nothing to report: the single process has not finished under {args.records}")
        todo = []
    else:
        missing = []
        for seed in [args.seed, *seeds]:
            if finished.get(single_label(seed, args)) is None:
                probed(run_single(replace(config, seed=seed), data, args))
        todo = [spec for spec in chain_runs if finished.get(spec[0]) is None]
    if todo:
        home = Path(tempfile.mkdtemp(prefix="litesrl-dhp-accuracy-"))  # its own cluster: one you run is left alone
        os.environ["XDG_STATE_HOME"], os.environ["XDG_CONFIG_HOME"] = str(home / "state"), str(home / "config")
        print(f"starting {args.nodes} emulated nodes reading {data}", flush=True)
        local.up(args.nodes, profile="tx2", data=data)
        try:
            for label, mode, period, weighting in todo:
                probed(run_chains(label, mode, period, weighting, config, args))
        finally:
            local.down()
    runs = [run for run in map(finished.get, labels) if run is not None]
    random_run = finished.get("random init")
    if random_run is None:
        random_run = {"label": "random init", "accs": probe(labelled, None, args)}
        finished.put("random init", random_run)
    random_accs = random_run["accs"]
    png = (args.out if args.smoke or args.no_write else REPO / "benchmarks" / "results") / "dhp_accuracy_loss.png"
    plot(runs, png)
    (args.out / "results.json").write_text(json.dumps({"runs": runs, "random_init": random_accs, "smoke": args.smoke},
                                                      indent=2) + "\n")
    body = report(runs, random_accs, args, None if args.report_only else load, png)
    if missing:
        body = (f"**Partial**: {len(missing)} run(s) not finished yet: {'; '.join(missing)} (the same command resumes "
                f"after the finished ones).\n\n" + body)
    if args.smoke:
        print("SMOKE RUN (--smoke): a toy size that proves the pipeline; these figures are not a result and are not "
              "written to BENCHMARKS.md.\n")
    print(body)
    if not args.smoke and not args.no_write:
        write_section(TITLE, "dhp_accuracy.py", body)


if __name__ == "__main__":
    main()
