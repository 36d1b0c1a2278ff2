"""`litesrl pretrain`: self-supervised pretraining of Lite-SRL (or the SimSiam configuration) on one machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from console.cli.common import SAR_RADIOMETRY_HELP, console, load_dataset, parse_duration, progress_bar
from console.errors import ConsoleError


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)


def pretrain(
    data: Annotated[list[Path], typer.Option("--data", help="Image folder(s) to learn from; sub-folders "
                                                            "allowed, labels ignored. Repeatable.")],
    modality: Annotated[str, typer.Option(help="optical (RGB) or sar (one-channel magnitude).")] = "optical",
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint.pt, "
                                           "metrics.jsonl, config.json, loss.png.")] = Path("runs/pretrain"),
    backbone: Annotated[str, typer.Option(help="resnet18, resnet34 or resnet50.")] = "resnet18",
    variant: Annotated[str, typer.Option(help="litesrl (paper heads) or simsiam (standard SimSiam heads).")] = "litesrl",
    stem: Annotated[str, typer.Option(help="imagenet (7x7/2 + max-pool) or compact (3x3/1, for small inputs).")] = "imagenet",
    image_size: Annotated[int, typer.Option(help="Side of each augmented view in pixels.")] = 64,
    load_size: Annotated[int | None, typer.Option(help="Side images are kept at in memory; crops "
                                                       "come from it (default 1.5x image size).")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per mini-batch (two views each).")] = 64,
    steps: Annotated[int | None, typer.Option(help="Optimiser steps (default: --epochs worth).")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the data, when --steps and --budget are not given.")] = 10.0,
    budget: Annotated[str | None, typer.Option(help="Wall-clock budget, e.g. 15min or 900s: the step "
                                                    "count is planned so the cosine schedule ends in time.")] = None,
    lr: Annotated[float, typer.Option(help="Base learning rate; peak = lr x batch / 256 (paper 0.05).")] = 0.05,
    crop_scale: Annotated[float, typer.Option(help="Smallest area fraction of the random resized crop.")] = 0.2,
    rotation: Annotated[str, typer.Option(help="rot90 (exact quarter turns) or any (any angle, then the "
                                               "largest inscribed crop; SAR targets seen from every azimuth).")] = "rot90",
    sar_radiometry: Annotated[str, typer.Option(help=SAR_RADIOMETRY_HELP)] = "mild",
    warmup_steps: Annotated[int, typer.Option(help="Linear warm-up steps.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, order and augmentations.")] = 0,
    workers: Annotated[int, typer.Option(help="Background augmentation processes (0: augment in the training process).")] = 1,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: all cores).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 100,
    precision: Annotated[str, typer.Option(help="fp32, bf16 (autocast, CPU or GPU) or "
                                                "fp16 (autocast + grad scaler, GPU only).")] = "fp32",
    sync_bn: Annotated[bool, typer.Option("--sync-bn", help="Under torchrun: BatchNorm statistics over "
                                                            "the global batch, not each process's share.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail instead of skipping unreadable images.")] = False,
) -> None:
    """Pretrain an encoder without labels (SGD 0.9, wd 1e-4, cosine; paper 4.3)."""
    from engine.augment import AugmentConfig
    from engine.device import set_threads
    from engine.distributed import init_from_environment
    from engine.io import read_jsonl
    from engine.model import ModelConfig
    from engine.plots import loss_curve
    from engine.pretrain import CHECKPOINT_NAME, PretrainConfig, Pretrainer, RunOptions

    if modality not in ("optical", "sar"):
        raise ConsoleError(f"unknown modality {modality!r}; choose optical or sar")
    if not 0.0 < crop_scale <= 1.0:
        raise ConsoleError(f"--crop-scale must be in (0, 1], got {crop_scale}")
    if rotation not in ("rot90", "any"):
        raise ConsoleError(f"unknown --rotation {rotation!r}; choose rot90 or any")
    if sar_radiometry not in ("mild", "strong"):
        raise ConsoleError(f"unknown --sar-radiometry {sar_radiometry!r}; choose mild or strong")
    checkpoint = out / CHECKPOINT_NAME
    if checkpoint.exists() and not resume:
        raise ConsoleError(f"{out} already holds a run; add --resume to continue it or choose another --out")
    if resume and not checkpoint.exists():
        raise ConsoleError(f"nothing to resume: {checkpoint} does not exist")
    set_threads(threads)
    dist, device = init_from_environment(device)  # under torchrun: join the job (gloo on CPUs, NCCL on GPUs)
    if dist and not dist.is_main:
        console.quiet = True  # rank 0 speaks for the job
    load = load_size or int(image_size * 1.5)
    images = load_dataset(data, modality, load, labelled=False, strict=strict)
    per_epoch = len(images) // batch_size
    if per_epoch < 1:
        raise ConsoleError(f"{len(images)} images cannot fill one batch of {batch_size}; lower --batch-size")
    total = steps or max(1, round(epochs * per_epoch))
    config = PretrainConfig(
        model=ModelConfig(backbone=backbone, variant=variant, in_channels=1 if modality == "sar" else 3, stem=stem),
        modality=modality, augment=AugmentConfig(size=image_size, crop_scale=(crop_scale, 1.0), rotation=rotation,
                                                  sar_radiometry=sar_radiometry),
        batch_size=batch_size, steps=total, base_lr=lr, warmup_steps=warmup_steps, seed=seed,
    )
    options = RunOptions(out_dir=out, device=device, workers=workers, checkpoint_every=checkpoint_every,
                         time_budget=parse_duration(budget) if budget else None, precision=precision, dist=dist, sync_bn=sync_bn)
    trainer = Pretrainer(config, images, options)
    if resume:
        trainer.resume()
        console.print(f"resuming at step {trainer.step} of {trainer.config.steps}")
    console.print(f"model: {variant} {backbone}, {sum(p.numel() for p in trainer.model.parameters()) / 1e6:.2f} "
                  f"M parameters, device {trainer.device}")
    with progress_bar() as progress:
        task = progress.add_task("pretraining", total=trainer.config.steps, completed=trainer.step, info="")

        def on_step(metrics, total_steps: int) -> None:
            progress.update(task, completed=metrics.step, total=total_steps,
                            info=f"loss {metrics.loss:+.4f}  std {metrics.collapse_std:.3f}  "
                                 f"{metrics.images_per_second:.0f} img/s")

        trainer.run(on_step)
    if dist:
        import torch.distributed

        torch.distributed.destroy_process_group()
        if not dist.is_main:
            return
    history = read_jsonl(out / "metrics.jsonl")
    loss_curve([h["step"] for h in history], [h["loss"] for h in history], [h["collapse_std"] for h in history], out / "loss.png")
    table = Table(title=f"pretraining finished: {out}")
    for column in ("steps", "epochs", "final loss", "collapse std", "time"):
        table.add_column(column, justify="right")
    last = history[-1]
    table.add_row(str(last["step"]), f"{last['epoch']:.1f}", f"{last['loss']:+.4f}", f"{last['collapse_std']:.3f}",
                  f"{last['elapsed_seconds']:.0f} s")
    console.print(table)
    console.print(f"checkpoint: {checkpoint}   metrics: {out / 'metrics.jsonl'}   curve: {out / 'loss.png'}")
