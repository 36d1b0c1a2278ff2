"""`litesrl data`: generate synthetic scenes, tile large scenes, inspect a dataset folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from console.cli.common import console, progress_bar
from console.errors import ConsoleError

data_app = typer.Typer(help="Prepare and inspect datasets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write DIR/<class>/<image> into.")],
    modality: Annotated[str, typer.Option(help="optical (RGB PNG) or sar (16-bit amplitude TIFF with speckle).")] = "optical",
    per_class: Annotated[int, typer.Option(help="Images per class.")] = 60,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 96,
    classes: Annotated[int, typer.Option(help="Number of classes (1-5).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed; the same seed gives the same files.")] = 0,
) -> None:
    """Write a seeded synthetic scene-classification dataset (for demos and tests)."""
    from engine.data.synthetic import generate

    if modality not in ("optical", "sar"):
        raise ConsoleError(f"unknown modality {modality!r}; choose optical or sar")
    with progress_bar(transient=True) as progress:
        task = progress.add_task("generating", total=per_class * classes, info="")
        generate(out, modality, per_class, size, seed, classes,
                 on_progress=lambda done, total: progress.update(task, completed=done))
    console.print(f"wrote {per_class * classes} {modality} images in {classes} classes to {out}")


@data_app.command("tile")
def tile(
    source: Annotated[Path, typer.Argument(help="Folder of large scenes (class sub-folders are kept).")],
    destination: Annotated[Path, typer.Argument(help="Folder for the patches.")],
    size: Annotated[int, typer.Option(help="Patch side in pixels (WHU-SAR6 protocol: 256).")] = 256,
    stride: Annotated[int, typer.Option(help="Step between patches (default: the patch size, no overlap).")] = 0,
) -> None:
    """Cut large scenes into fixed-size patches, losslessly."""
    from engine.data.tiling import tile_folder

    with progress_bar(transient=True) as progress:
        task = progress.add_task("tiling", total=None, info="")
        written, skipped = tile_folder(source, destination, size, stride or None,
                                       on_progress=lambda done, total: progress.update(task, completed=done, total=total))
    for path, reason in skipped:
        console.print(f"[yellow]skipped[/] {path}: {reason}")
    console.print(f"wrote {written} patches of {size} px to {destination}; skipped {len(skipped)} file(s)")


@data_app.command("inspect")
def inspect(
    folder: Annotated[Path, typer.Argument(help="Labelled folder DIR/<class>/<image>.")],
    modality: Annotated[str, typer.Option(help="optical or sar.")] = "optical",
) -> None:
    """Count images per class and check that every file decodes."""
    from console.cli.common import load_dataset

    images = load_dataset([folder], modality, 32, labelled=True)
    table = Table(title=str(folder))
    table.add_column("class")
    table.add_column("images", justify="right")
    counts = images.labels.bincount(minlength=len(images.classes)).tolist()
    for name, count in zip(images.classes, counts):
        table.add_row(name, str(count))
    table.add_row("[bold]total", f"[bold]{len(images)}")
    console.print(table)
