"""Pieces the CLI commands share: durations, rich progress, loading datasets with a report."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from console.errors import ConsoleError

console = Console(stderr=True)

SAR_RADIOMETRY_HELP = ("SAR views: mild (speckle of 2-10 looks, brightness/contrast 0.2) or strong (speckle of 1-4 "
                       "looks, brightness/contrast 0.4, a random display power law): strong keeps the clutter's "
                       "grey levels from matching two views of one chip.")


def parse_duration(text: str) -> float:
    """Seconds in ``text`` (``900s``, ``15min``, ``1.5h``), with the units every litesrl flag uses."""
    from engine.cwb.units import parse_duration_ms

    return parse_duration_ms(text) / 1000.0


@contextmanager
def progress_bar(transient: bool = False) -> Iterator[Progress]:
    """A rich progress display on stderr (stdout stays clean for --json)."""
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=transient,
    ) as progress:
        yield progress


def load_dataset(paths: Sequence[Path], modality: str, size: int, labelled: bool, strict: bool = False):
    """Scan and decode a dataset with a progress bar; report skipped files (or fail with ``strict``)."""
    from engine.data.folder import load_images, scan_labelled, scan_unlabelled

    if labelled:
        if len(paths) != 1:
            raise ConsoleError("evaluation takes exactly one labelled --data folder")
        classes, records = scan_labelled(paths[0])
    else:
        classes, records = [], scan_unlabelled(paths)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("reading images", total=len(records), info="")
        images = load_images(records, modality, size, classes,
                             on_progress=lambda done, total: progress.update(task, completed=done))
    if images.skipped:
        console.print(f"[yellow]warning:[/] skipped {len(images.skipped)} unreadable file(s):")
        for skipped in images.skipped[:10]:
            console.print(f"  {skipped.path}: {skipped.reason}")
        if len(images.skipped) > 10:
            console.print(f"  ... and {len(images.skipped) - 10} more")
        if strict:
            raise ConsoleError(f"{len(images.skipped)} unreadable image file(s) and --strict is set")
    console.print(f"data: {images.describe()}")
    return images
