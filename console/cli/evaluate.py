"""`litesrl eval`: freeze (linear probe) or fine-tune evaluation, with confusion matrix and t-SNE."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from console.cli.common import console, load_dataset, progress_bar
from console.errors import ConsoleError


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate_command)


def evaluate_command(
    data: Annotated[Path, typer.Option("--data", help="Labelled image folder: DIR/<class>/<image>.")],
    mode: Annotated[str, typer.Option(help="freeze (linear probe on fixed features) or finetune.")] = "freeze",
    checkpoint: Annotated[Optional[Path], typer.Option(help="Pretrained checkpoint; omit for the random-init baseline.")] = None,
    modality: Annotated[Optional[str], typer.Option(help="optical or sar (default: the checkpoint's).")] = None,
    backbone: Annotated[str, typer.Option(help="Backbone of the random-init baseline.")] = "resnet18",
    stem: Annotated[str, typer.Option(help="Stem of the random-init baseline.")] = "imagenet",
    train_fraction: Annotated[float, typer.Option(help="Share of each class used as labelled training data.")] = 0.2,
    split: Annotated[str, typer.Option(help="stratified, or block (contiguous file blocks; for MSTAR).")] = "stratified",
    block_size: Annotated[int, typer.Option(help="Files per block with --split block.")] = 10,
    image_size: Annotated[Optional[int], typer.Option(help="Encoder input side (default: the checkpoint's view size, else 64).")] = None,
    load_size: Annotated[Optional[int], typer.Option(help="Side images are decoded at before --centre-crop (default: the encoder input side).")] = None,
    centre_crop: Annotated[Optional[int], typer.Option("--centre-crop", help="Keep the central N px of each loaded image (MSTAR: 80 of 128, the target without clutter).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Classifier epochs (default 200 freeze, 30 finetune).")] = None,
    batch_size: Annotated[int, typer.Option(help="Classifier mini-batch.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the classifier.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the split and the classifier.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for results.json, confusion.txt/.png, tsne.png.")] = Path("runs/eval"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    tsne: Annotated[bool, typer.Option("--tsne/--no-tsne", help="Draw the t-SNE of test features.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail instead of skipping unreadable images.")] = False,
) -> None:
    """Train a linear classifier on a labelled share of DATA and report accuracy on the rest."""
    from engine.checkpoint import load_checkpoint
    from engine.evaluate import EvalConfig, evaluate
    from engine.io import atomic_write_json, atomic_write_text
    from engine.model import ModelConfig
    from engine.plots import confusion_matrix_png, confusion_text, tsne_png

    stored = load_checkpoint(checkpoint) if checkpoint else None
    pretrain = stored.get("pretrain_config", {}) if stored else {}
    modality = modality or pretrain.get("modality") or "optical"
    if modality not in ("optical", "sar"):
        raise ConsoleError(f"unknown modality {modality!r}; choose optical or sar")
    size = image_size or pretrain.get("augment", {}).get("size") or 64
    config = EvalConfig(mode=mode, train_fraction=train_fraction, split=split, block_size=block_size, seed=seed,
                        image_size=size, epochs=epochs or (200 if mode == "freeze" else 30), batch_size=batch_size, lr=lr)
    images = load_dataset([data], modality, load_size or size, labelled=True, strict=strict)
    if centre_crop:
        images = images.centre(centre_crop)
    baseline = ModelConfig(backbone=backbone, in_channels=1 if modality == "sar" else 3, stem=stem)
    with progress_bar(transient=True) as progress:
        task = progress.add_task(mode, total=config.epochs, info="")
        result = evaluate(images, config, str(checkpoint) if checkpoint else None, baseline, device,
                          on_progress=lambda what, done, total: progress.update(task, description=what, completed=done, total=total))
    out.mkdir(parents=True, exist_ok=True)
    payload = result.to_json() | {"data": str(data), "modality": modality, "skipped_files": len(images.skipped)}
    atomic_write_json(out / "results.json", payload)
    import numpy as np

    matrix = np.array(result.confusion)
    title = f"{mode}, {result.encoder}: {result.overall_accuracy:.1%}"
    atomic_write_text(out / "confusion.txt", confusion_text(matrix, result.classes))
    confusion_matrix_png(matrix, result.classes, out / "confusion.png", title)
    if tsne and result.test_features is not None:
        tsne_png(result.test_features, result.test_labels, result.classes, out / "tsne.png", f"t-SNE of test features ({mode})", seed)
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    table = Table(title=f"{mode} evaluation of {result.encoder}")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, accuracy in result.per_class_accuracy.items():
        table.add_row(name, f"{accuracy:.1%}")
    table.add_row("[bold]overall", f"[bold]{result.overall_accuracy:.1%}")
    console.print(table)
    console.print(confusion_text(matrix, result.classes), highlight=False)
    console.print(f"train {result.train_images} / test {result.test_images} images; results in {out}/")
