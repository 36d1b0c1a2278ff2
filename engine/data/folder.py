"""ImageFolder-style datasets read into memory once: labelled (evaluation) or unlabelled (pretraining).

Unreadable files are skipped, counted and reported: a dataset of thousands of files should not
die on one truncated JPEG, and no file is dropped without saying so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from engine.data.images import Modality, SarScaling, is_image_file, read_image
from engine.errors import DataError

log = logging.getLogger(__name__)
UNLABELLED = -1


@dataclass(frozen=True)
class ImageRecord:
    """One image file and its class index (``UNLABELLED`` for pretraining pools)."""

    path: Path
    label: int = UNLABELLED


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass
class ImageSet:
    """Decoded images of one dataset, all resized to ``size`` x ``size``, kept as uint8."""

    images: torch.Tensor
    """(N, C, size, size) uint8."""
    labels: torch.Tensor
    """(N,) int64 class indices, -1 when unlabelled."""
    paths: list[Path]
    classes: list[str]
    modality: Modality
    skipped: list[SkippedFile] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ImageSet:
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageSet(
            self.images[index], self.labels[index], [self.paths[i] for i in index.tolist()],
            self.classes, self.modality, [],
        )

    def centre(self, side: int) -> ImageSet:
        """The central ``side`` x ``side`` pixels of every image (e.g. a SAR chip's target, without clutter)."""
        height, width = self.images.shape[-2:]
        if not 0 < side <= min(height, width):
            raise DataError(f"a centre crop of {side} px does not fit images of {height}x{width} px")
        top, left = (height - side) // 2, (width - side) // 2
        cropped = self.images[..., top:top + side, left:left + side].contiguous()
        return ImageSet(cropped, self.labels, self.paths, self.classes, self.modality, self.skipped)

    def describe(self) -> str:
        """One line: counts, classes and what was skipped."""
        text = f"{len(self)} {self.modality} images"
        if self.classes:
            text += f" in {len(self.classes)} classes"
        if self.skipped:
            first = self.skipped[0]
            text += f"; skipped {len(self.skipped)} unreadable file(s), e.g. {first.path.name}: {first.reason}"
        return text


def scan_labelled(root: Path) -> tuple[list[str], list[ImageRecord]]:
    """Classes (sorted sub-folder names) and image records of an ImageFolder tree ``root/<class>/<image>``."""
    root = _existing_dir(root)
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root} has no class sub-folders; expected {root}/<class>/<image>")
    records: list[ImageRecord] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise DataError(f"class folder {class_dir} has no images (.jpg .png .tif)")
        records.extend(ImageRecord(path, label) for path in files)
    return [p.name for p in class_dirs], records


def scan_unlabelled(roots: Sequence[Path]) -> list[ImageRecord]:
    """Every image below each of ``roots`` (sub-folders allowed, their names ignored)."""
    records: list[ImageRecord] = []
    for root in roots:
        root = _existing_dir(root)
        files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise DataError(f"{root} holds no images (.jpg .png .tif)")
        records.extend(ImageRecord(path) for path in files)
    return records


def load_images(
    records: Sequence[ImageRecord],
    modality: Modality,
    size: int,
    classes: Sequence[str] = (),
    sar_scaling: SarScaling = SarScaling(),
    on_progress: Callable[[int, int], None] | None = None,
) -> ImageSet:
    """Decode ``records`` into one uint8 tensor at ``size`` x ``size``.

    Each image's short side is resized to ``size`` (antialiased) and the centre square kept; scenes
    are square in every dataset we target, so nothing is lost there.
    """
    channels = 1 if modality == "sar" else 3
    kept: list[torch.Tensor] = []
    labels: list[int] = []
    paths: list[Path] = []
    skipped: list[SkippedFile] = []
    for done, record in enumerate(records, start=1):
        try:
            image = read_image(record.path, modality, sar_scaling, min_side=size)
        except Exception as exc:  # any decoder failure means "unreadable"; it is reported below
            skipped.append(SkippedFile(record.path, describe_error(exc)))
            log.warning("skipping unreadable image %s: %s", record.path, describe_error(exc))
        else:
            kept.append(square(image, size))
            labels.append(record.label)
            paths.append(record.path)
        if on_progress:
            on_progress(done, len(records))
    if not kept:
        raise DataError(f"none of the {len(records)} image file(s) could be read; first error: {skipped[0].reason}")
    images = torch.stack(kept) if kept else torch.empty(0, channels, size, size, dtype=torch.uint8)
    return ImageSet(images, torch.tensor(labels, dtype=torch.long), paths, list(classes), modality, skipped)


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image`` (C, H, W) with its short side resized to ``size`` (antialiased) and the centre square kept."""
    if image.shape[-2:] != (size, size):
        image = TF.resize(image, size, antialias=True)
        image = TF.center_crop(image, [size, size])
    return image.contiguous()


def _existing_dir(root: Path) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    return root


def describe_error(exc: Exception) -> str:
    """``Type: first line of the message``, for reports of skipped files."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
