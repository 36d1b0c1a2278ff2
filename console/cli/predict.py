"""`litesrl predict`: label images, folders or tiled scenes with a classifier from `litesrl eval --save-classifier`."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Annotated

import typer

from console.cli.common import console, progress_bar
from console.errors import ConsoleError

CSV_COLUMNS = ("path", "tile_y", "tile_x", "label", "score")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_command)


def predict_command(
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders (searched recursively).")],
    checkpoint: Annotated[Path, typer.Option(
        "--checkpoint", help="Classifier checkpoint written by `litesrl eval --save-classifier`.")],
    tile: Annotated[int | None, typer.Option(help="Cut each image into N px tiles (as "
                                                  "`litesrl data tile`) and label every tile.")] = None,
    stride: Annotated[int | None, typer.Option(help="Step between tiles (default: the tile size, no overlap).")] = None,
    out: Annotated[Path | None, typer.Option(help="Write the labels here (.csv or .json); default: CSV on stdout.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (with every class's probability) instead of CSV.")] = False,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
) -> None:
    """Print or write the label and score of every image (or tile)."""
    from dataclasses import asdict

    from engine.classifier import load_classifier
    from engine.device import resolve_device
    from engine.io import atomic_write_text
    from engine.predict import gather_files, predict

    if batch_size < 1 or (tile is not None and tile < 1) or (stride is not None and stride < 1):
        raise ConsoleError("--batch-size, --tile and --stride must be >= 1")
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise ConsoleError(f"--out must end in .csv or .json, got {out.name}")
    classifier, classes, preprocess, _ = load_classifier(checkpoint)
    files = gather_files(images)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("predicting", total=len(files), info="")
        predictions, skipped = predict(classifier, classes, preprocess, files, tile, stride, batch_size, resolve_device(device),
                                       on_progress=lambda done, total: progress.update(task, completed=done))
    for item in skipped:
        console.print(f"[yellow]skipped[/] {item.path}: {item.reason}")
    if not predictions:
        raise ConsoleError(f"none of the {len(files)} file(s) could be labelled ({len(skipped)} skipped)")
    rows = [asdict(p) for p in predictions]
    if as_json or (out is not None and out.suffix.lower() == ".json"):
        text = json.dumps({"checkpoint": str(checkpoint), "classes": classes, "predictions": rows,
                           "skipped": [{"path": str(s.path), "reason": s.reason} for s in skipped]}, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows([[row[c] if row[c] is not None else "" for c in CSV_COLUMNS[:4]] + [f"{row['score']:.4f}"]
                          for row in rows])
        text = buffer.getvalue()
    if out is None:
        typer.echo(text, nl=False)
    else:
        atomic_write_text(out, text)
    console.print(f"labelled {len(predictions)} {'tile' if tile else 'image'}(s) from {len(files) - len(skipped)} file(s); "
                  f"skipped {len(skipped)}" + (f"; written to {out}" if out else ""))
