"""Tiling large scenes into fixed-size patches (the WHU-SAR6 protocol: 500-600 px scenes -> 256 px)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.data.images import is_image_file
from engine.errors import DataError


def tile_origins(height: int, width: int, tile: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of the tiles covering an image; the last row/column is pushed back inside
    the image so edges are covered without padding. An image smaller than ``tile`` yields none."""
    if tile < 1 or stride < 1:
        raise DataError(f"tile size and stride must be positive, got {tile} and {stride}")
    if height < tile or width < tile:
        return []

    def starts(extent: int) -> list[int]:
        points = list(range(0, extent - tile + 1, stride))
        if points[-1] != extent - tile:
            points.append(extent - tile)
        return points

    return [(y, x) for y in starts(height) for x in starts(width)]


def tile_folder(
    source: Path,
    destination: Path,
    tile: int = 256,
    stride: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[int, list[tuple[Path, str]]]:
    """Cut every image below ``source`` into ``tile`` px patches under ``destination``, keeping the
    folder structure (so class folders survive) and the pixel data exactly (TIFF stays TIFF with its
    dtype; other formats are written as PNG, lossless). Returns (patches written, skipped files)."""
    import tifffile
    from PIL import Image

    source, destination = Path(source), Path(destination)
    if not source.is_dir():
        raise DataError(f"data folder {source} does not exist")
    if destination.resolve().is_relative_to(source.resolve()):
        raise DataError(f"destination {destination} must not lie inside the source {source}")
    stride = stride or tile
    files = sorted(p for p in source.rglob("*") if p.is_file() and is_image_file(p))
    written, skipped = 0, []
    for done, path in enumerate(files, start=1):
        try:
            is_tiff = path.suffix.lower() in (".tif", ".tiff")
            array = tifffile.imread(path) if is_tiff else np.asarray(Image.open(path))
            height, width = array.shape[:2]
            origins = tile_origins(height, width, tile, stride)
            if not origins:
                skipped.append((path, f"{width}x{height} is smaller than the {tile} px tile"))
            out_dir = destination / path.parent.relative_to(source)
            out_dir.mkdir(parents=True, exist_ok=True)
            for y, x in origins:
                patch = np.ascontiguousarray(array[y : y + tile, x : x + tile])
                name = f"{path.stem}_y{y}_x{x}"
                if is_tiff:
                    tifffile.imwrite(out_dir / f"{name}.tif", patch)
                else:
                    Image.fromarray(patch).save(out_dir / f"{name}.png")
                written += 1
        except (OSError, ValueError) as exc:
            skipped.append((path, f"{type(exc).__name__}: {exc}"))
        if on_progress:
            on_progress(done, len(files))
    return written, skipped
