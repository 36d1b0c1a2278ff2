"""`litesrl eval`: freeze (linear + kNN probes) or fine-tune evaluation, one split or the field's protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from console.cli.common import console, load_dataset, progress_bar
from console.errors import ConsoleError


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate_command)


def parse_fractions(text: str) -> list[float]:
    """``0.1,0.2,0.5`` -> [0.1, 0.2, 0.5]; each must lie in (0, 1)."""
    try:
        fractions = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConsoleError(f"--train-fraction takes numbers separated by commas, e.g. 0.1,0.2,0.5; got {text!r}") from None
    bad = [f for f in fractions if not 0.0 < f < 1.0]
    if bad or not fractions:
        raise ConsoleError(f"train fractions must lie in (0, 1), got {text!r}")
    return fractions


def evaluate_command(
    data: Annotated[Path, typer.Option("--data", help="Labelled image folder: DIR/<class>/<image>.")],
    test_data: Annotated[Path | None, typer.Option(
        "--test-data", help="Separate labelled test folder (same classes): train "
                            "on --data, score here (MSTAR SOC: 17 deg / 15 deg).")] = None,
    mode: Annotated[str, typer.Option(help="freeze (probes on fixed features) or finetune.")] = "freeze",
    checkpoint: Annotated[Path | None, typer.Option(help="Pretrained checkpoint; omit for the random-init baseline.")] = None,
    baseline: Annotated[Path | None, typer.Option(help="Checkpoint compared per split when "
                                                       "several splits run (default: random init).")] = None,
    modality: Annotated[str | None, typer.Option(help="optical or sar (default: the checkpoint's).")] = None,
    backbone: Annotated[str, typer.Option(help="Backbone of the random-init baseline.")] = "resnet18",
    stem: Annotated[str, typer.Option(help="Stem of the random-init baseline.")] = "imagenet",
    train_fraction: Annotated[str | None, typer.Option(
        help="Share(s) of each class used as labelled training data, e.g. 0.1,0.2,0.5: "
             "one table each (default 0.2; all of --data with --test-data).")] = None,
    seeds: Annotated[int, typer.Option(help="Label splits per fraction (mean ± std, paired difference against --baseline).")] = 1,
    split: Annotated[str, typer.Option(help="stratified, or block (contiguous file blocks; for MSTAR).")] = "stratified",
    block_size: Annotated[int, typer.Option(help="Files per block with --split block.")] = 10,
    image_size: Annotated[int | None, typer.Option(help="Encoder input side (default: the "
                                                        "checkpoint's view size, else 64).")] = None,
    load_size: Annotated[int | None, typer.Option(help="Side images are decoded at before --centre-crop "
                                                       "(default: the encoder input side).")] = None,
    centre_crop: Annotated[int | None, typer.Option(
        "--centre-crop", help="Keep the central N px of each loaded image "
                              "(MSTAR: 80 of 128, the target without clutter).")] = None,
    linear: Annotated[str, typer.Option(help="Linear probe: logreg (L2 logistic regression to convergence, strength "
                                             "by cross-validation) or adam (the earlier fixed-epoch probe).")] = "logreg",
    knn: Annotated[int, typer.Option(help="Neighbours of the kNN probe (0: none).")] = 20,
    epochs: Annotated[int | None, typer.Option(help="Epochs of the adam probe or of fine-tuning "
                                                    "(default 200 freeze, 30 finetune).")] = None,
    batch_size: Annotated[int, typer.Option(help="Mini-batch of the adam probe and fine-tuning.")] = 64,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the classifier (adam probe, fine-tuning).")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of the (first) split and the classifier.")] = 0,
    save_classifier: Annotated[Path | None, typer.Option(
        "--save-classifier", help="Write the trained classifier (encoder + head + classes + "
                                  "preprocessing) here, for `litesrl predict` and `litesrl export`.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for results.json, confusion.txt/.png, "
                                           "tsne.png (protocol: protocol.md).")] = Path("runs/eval"),
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    tsne: Annotated[bool, typer.Option("--tsne/--no-tsne", help="Draw the t-SNE of test features.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Fail instead of skipping unreadable images.")] = False,
) -> None:
    """Train a classifier on a labelled share of DATA and report accuracy on the rest (or on --test-data)."""
    from engine.checkpoint import load_checkpoint
    from engine.evaluate import EvalConfig, evaluate
    from engine.io import atomic_write_json
    from engine.model import ModelConfig

    stored = load_checkpoint(checkpoint) if checkpoint else None
    pretrain = stored.get("pretrain_config", {}) if stored else {}
    modality = modality or pretrain.get("modality") or (stored or {}).get("preprocess", {}).get("modality") or "optical"
    if modality not in ("optical", "sar"):
        raise ConsoleError(f"unknown modality {modality!r}; choose optical or sar")
    fractions = parse_fractions(train_fraction) if train_fraction else [1.0 if test_data else 0.2]
    if seeds < 1:
        raise ConsoleError(f"--seeds must be >= 1, got {seeds}")
    protocol = len(fractions) > 1 or seeds > 1
    if protocol and save_classifier:
        raise ConsoleError("--save-classifier takes one --train-fraction and --seeds 1 (one classifier)")
    size = image_size or pretrain.get("augment", {}).get("size") or 64
    config = EvalConfig(mode=mode, train_fraction=fractions[0], split=split, block_size=block_size, seed=seed, image_size=size,
                        linear=linear, knn_k=knn, epochs=epochs or (200 if mode == "freeze" else 30), batch_size=batch_size,
                        lr=lr)
    images = _load(data, modality, load_size or size, centre_crop, strict)
    test_images = _load(test_data, modality, load_size or size, centre_crop, strict) if test_data else None
    random_init = ModelConfig(backbone=backbone, in_channels=1 if modality == "sar" else 3, stem=stem)
    out.mkdir(parents=True, exist_ok=True)
    sources = {"data": str(data), "test_data": str(test_data) if test_data else None, "modality": modality,
               "skipped_files": len(images.skipped) + (len(test_images.skipped) if test_images else 0)}
    if protocol:
        _protocol(images, test_images, config, fractions, seeds, checkpoint, baseline, random_init, device, out, sources, as_json)
        return
    with progress_bar(transient=True) as progress:
        task = progress.add_task(mode, total=config.epochs, info="")
        result = evaluate(images, config, str(checkpoint) if checkpoint else None, random_init, device,
                          on_progress=lambda what, done, total: progress.update(
                              task, description=what, completed=done, total=total),
                          test_images=test_images)
    payload = result.to_json() | sources
    atomic_write_json(out / "results.json", payload)
    if save_classifier:
        _save(save_classifier, result, checkpoint, random_init, modality, load_size or size, centre_crop, size, payload)
    _report(result, out, tsne, seed)
    if as_json:
        typer.echo(json.dumps(payload, indent=2))


def _load(path: Path, modality: str, size: int, centre_crop: int | None, strict: bool):
    images = load_dataset([path], modality, size, labelled=True, strict=strict)
    return images.centre(centre_crop) if centre_crop else images


def _protocol(images, test_images, config, fractions, seeds, checkpoint, baseline, random_init, device, out, sources,
              as_json) -> None:
    from engine.io import atomic_write_json, atomic_write_text
    from engine.protocol import protocol_markdown, run_protocol, table_rows

    with progress_bar(transient=True) as progress:
        task = progress.add_task("protocol", total=1, info="")
        result = run_protocol(images, config, fractions, seeds, str(checkpoint) if checkpoint else None,
                              str(baseline) if baseline else None, random_init, test_images, device,
                              on_progress=lambda what, done, total: progress.update(task, info=what, completed=done, total=total))
    payload = result.to_json() | sources
    atomic_write_json(out / "results.json", payload)
    atomic_write_text(out / "protocol.md", protocol_markdown(result))
    if as_json:
        typer.echo(json.dumps(payload, indent=2))
        return
    for table in result.tables:
        view = Table(title=f"{config.mode}, {table.fraction:.0%} of the training labels: {table.train_images[0]} train / "
                           f"{table.test_images[0]} test images, {seeds} split(s), mean ± std %")
        for column, justify in (("encoder", "left"), ("linear" if config.mode == "freeze" else "fine-tuned", "right"),
                                (f"kNN (k={config.knn_k})", "right"), ("per split", "left")):
            view.add_column(column, justify=justify)
        for row in table_rows(result, table):
            view.add_row(*row)
        console.print(view)
    console.print(f"results in {out}/results.json and {out}/protocol.md")


def _save(path, result, checkpoint, random_init, modality, load_size, centre_crop, size, payload) -> None:
    from engine.checkpoint import load_checkpoint
    from engine.classifier import Preprocess, save_classifier
    from engine.model import ModelConfig

    model_config = ModelConfig.from_dict(load_checkpoint(checkpoint)["model_config"]) if checkpoint else random_init
    mean, std = result.normalisation
    preprocess = Preprocess(modality, load_size, centre_crop, size, tuple(mean.tolist()), tuple(std.tolist()))
    save_classifier(path, result.classifier, result.classes, model_config, preprocess, payload)
    console.print(f"classifier: {path}")


def _report(result, out: Path, tsne: bool, seed: int) -> None:
    import numpy as np

    from engine.io import atomic_write_text
    from engine.plots import confusion_matrix_png, confusion_text, tsne_png

    matrix = np.array(result.confusion)
    title = f"{result.mode}, {result.encoder}: {result.overall_accuracy:.1%}"
    atomic_write_text(out / "confusion.txt", confusion_text(matrix, result.classes))
    confusion_matrix_png(matrix, result.classes, out / "confusion.png", title)
    if tsne and result.test_features is not None:
        tsne_png(result.test_features, result.test_labels, result.classes, out / "tsne.png",
                 f"t-SNE of test features ({result.mode})", seed)
    table = Table(title=f"{result.mode} evaluation of {result.encoder}")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, accuracy in result.per_class_accuracy.items():
        table.add_row(name, f"{accuracy:.1%}")
    table.add_row("[bold]overall", f"[bold]{result.overall_accuracy:.1%}")
    if result.knn_accuracy is not None:
        table.add_row("kNN probe", f"{result.knn_accuracy:.1%}")
    console.print(table)
    console.print(confusion_text(matrix, result.classes), highlight=False)
    console.print(f"train {result.train_images} / test {result.test_images} images; results in {out}/")
