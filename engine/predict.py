"""Classifying new images with a saved classifier: whole files, or large scenes cut into tiles."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from engine.classifier import Preprocess
from engine.data.folder import ImageSet, SkippedFile, describe_error, square
from engine.data.images import is_image_file, read_image
from engine.data.tiling import tile_origins
from engine.errors import DataError
from engine.evaluate import prepare

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prediction:
    """The label of one image, or of one tile of a scene."""

    path: str
    tile_y: int | None
    """Top row of the tile in the scene's pixels (None: the whole image)."""
    tile_x: int | None
    """Left column of the tile (None: the whole image)."""
    label: str
    score: float
    """Softmax probability of ``label``."""
    probabilities: dict[str, float]
    """Softmax probability of every class."""


def gather_files(inputs: Sequence[Path]) -> list[Path]:
    """Image files named directly, and every image file below each named folder (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise DataError(f"{item} holds no images (.jpg .png .tif)")
            files.extend(found)
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item} does not exist")
    return files


def _pieces(path: Path, preprocess: Preprocess, tile: int | None,
            stride: int | None) -> Iterator[tuple[int | None, int | None, torch.Tensor]]:
    """(tile_y, tile_x, uint8 (C, load_size, load_size)) of a file: itself, or its tiles."""
    if tile is None:
        image = read_image(path, preprocess.modality, min_side=preprocess.load_size)
        yield None, None, square(image, preprocess.load_size)
        return
    image = read_image(path, preprocess.modality)
    origins = tile_origins(image.shape[1], image.shape[2], tile, stride or tile)
    if not origins:
        raise ValueError(f"{image.shape[2]}x{image.shape[1]} is smaller than the {tile} px tile")
    for y, x in origins:
        yield y, x, square(image[:, y : y + tile, x : x + tile], preprocess.load_size)


@torch.no_grad()
def predict(
    classifier: nn.Module,
    classes: list[str],
    preprocess: Preprocess,
    files: Sequence[Path],
    tile: int | None = None,
    stride: int | None = None,
    batch_size: int = 64,
    device: torch.device = torch.device("cpu"),
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Prediction], list[SkippedFile]]:
    """Label every file (or tile); unreadable files are skipped and returned with the reason."""
    classifier = classifier.to(device).eval()
    mean, std = torch.tensor(preprocess.mean), torch.tensor(preprocess.std)
    predictions: list[Prediction] = []
    skipped: list[SkippedFile] = []
    pending: list[tuple[str, int | None, int | None, torch.Tensor]] = []

    def flush() -> None:
        batch = torch.stack([item[3] for item in pending])  # (B, C, L, L) uint8
        if preprocess.centre_crop:
            batch = ImageSet(batch, torch.zeros(len(batch), dtype=torch.long), [], classes,
                             preprocess.modality).centre(preprocess.centre_crop).images
        probabilities = classifier(prepare(batch, mean, std, preprocess.image_size).to(device)).float().softmax(dim=1).cpu()
        for (path, y, x, _), row in zip(pending, probabilities):
            best = int(row.argmax())
            predictions.append(Prediction(path, y, x, classes[best], float(row[best]), dict(zip(classes, row.tolist()))))
        pending.clear()

    for done, path in enumerate(files, start=1):
        try:
            pieces = list(_pieces(path, preprocess, tile, stride))
        except Exception as exc:  # any decoder failure means "unreadable"; reported, not fatal
            reason = describe_error(exc)
            skipped.append(SkippedFile(path, reason))
            log.warning("skipping %s: %s", path, reason)
        else:
            pending.extend((str(path), y, x, piece) for y, x, piece in pieces)
            if len(pending) >= batch_size:
                flush()
        if on_progress:
            on_progress(done, len(files))
    if pending:
        flush()
    return predictions, skipped
