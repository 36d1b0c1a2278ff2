"""Stage-1 mini-batches of a DHP run: the same two-view batches single-machine pretraining builds.

Every stage-1 node reads the dataset from its own disk and builds batch ``k`` from (seed, k) alone
(``engine.views``), so whichever replica runs batch k feeds the chain exactly the tensors
``engine.pretrain`` would feed step k, and a requeued batch is rebuilt identically elsewhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.augment import AugmentConfig, build_view_transform
from engine.augment.pipelines import channel_stats
from engine.data.folder import load_images, scan_unlabelled
from engine.data.images import Modality
from engine.errors import ConfigError
from engine.views import TwoViewBatches

if TYPE_CHECKING:
    from engine.pretrain import PretrainConfig


@dataclass(frozen=True)
class DataSettings:
    """What a stage-1 node needs to build the run's mini-batches; identical on every replica."""

    path: str | None
    """Dataset folder on the node (None: the node's own ``--data``)."""
    modality: Modality = "optical"
    """``optical`` or ``sar`` (the augmentation pipeline, paper 4.2)."""
    load_size: int = 48
    """Side images are decoded to in memory; crops come from it."""
    view_size: int = 32
    """Side of each augmented view (the model's input)."""
    crop_scale: float = 0.2
    """Smallest area fraction of the random resized crop."""
    rotation: str = "rot90"
    """``rot90`` (exact quarter turns) or ``any`` (any angle, then the largest inscribed crop)."""
    sar_radiometry: str = "mild"
    """SAR views: ``mild`` or ``strong`` speckle and display-mapping changes (``AugmentConfig.sar_radiometry``)."""
    batch_size: int = 64
    """Images per mini-batch (two views each)."""
    seed: int = 0
    """Seeds the image order and every augmentation."""

    def __post_init__(self) -> None:
        if self.modality not in ("optical", "sar"):
            raise ConfigError(f"unknown modality {self.modality!r}; choose optical or sar")
        if self.batch_size < 2:
            raise ConfigError(f"batch size must be >= 2 (BatchNorm needs more than one sample), got {self.batch_size}")
        if not 0 < self.crop_scale <= 1:
            raise ConfigError(f"crop scale must be in (0, 1], got {self.crop_scale}")
        self.augment  # noqa: B018  (AugmentConfig checks the rotation and the SAR radiometry)

    @property
    def augment(self) -> AugmentConfig:
        """The augmentation settings of the views (``litesrl pretrain``'s for the same flags)."""
        return AugmentConfig(size=self.view_size, crop_scale=(self.crop_scale, 1.0), rotation=self.rotation,  # type: ignore[arg-type]
                             sar_radiometry=self.sar_radiometry)  # type: ignore[arg-type]

    @classmethod
    def of_recipe(cls, config: PretrainConfig, load_size: int, path: str | None = None) -> DataSettings:
        """The data settings that build single-machine pretraining ``config``'s mini-batches (its modality,
        augmentations, batch and seed) from images decoded at ``load_size``; ConfigError for augmentation
        strengths a DHP run cannot carry."""
        data = cls(path=path, modality=config.modality, load_size=load_size, view_size=config.augment.size,
                   crop_scale=config.augment.crop_scale[0], rotation=config.augment.rotation,
                   sar_radiometry=config.augment.sar_radiometry,
                   batch_size=config.batch_size, seed=config.seed)
        if data.augment != config.augment:
            raise ConfigError("a DHP run takes the view size, crop scale, rotation and SAR radiometry only; "
                              f"got {config.augment}")
        return data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSettings:
        """Rebuild from ``to_dict``; ConfigError for a missing or unknown key."""
        names = set(cls.__dataclass_fields__)
        if not isinstance(data, dict) or set(data) != names:
            raise ConfigError(f"data settings need exactly the keys {sorted(names)}, "
                              f"got {sorted(data) if isinstance(data, dict) else data!r}")
        return cls(**data)


class StageOneData:
    """The decoded dataset of a stage-1 node and the batch builder over it."""

    def __init__(self, settings: DataSettings, path: Path) -> None:
        """Decode every image under ``path`` (sub-folders allowed); raises DataError when there are none."""
        images = load_images(scan_unlabelled([path]), settings.modality, settings.load_size)
        if len(images) < settings.batch_size:
            raise ConfigError(f"{path} holds {len(images)} readable images, fewer than one batch of {settings.batch_size}")
        self.settings = settings
        self.path = path
        self.count = len(images)
        self.skipped = len(images.skipped)
        self.mean, self.std = channel_stats(images.images)
        transform = build_view_transform(settings.modality, settings.augment, self.mean, self.std)
        self._batches = TwoViewBatches(images.images, transform, settings.batch_size, settings.seed, 0, 1 << 62)

    @property
    def batches_per_epoch(self) -> int:
        """Full mini-batches per pass over the data (the last partial batch is dropped)."""
        return self.count // self.settings.batch_size

    def views(self, batch: int) -> torch.Tensor:
        """Mini-batch ``batch`` as (2B, C, S, S): view a of every image stacked over view b."""
        return self._batches[batch]

    def describe(self) -> dict[str, Any]:
        """What the coordinator checks is the same on every replica and stores in checkpoints."""
        return {
            "images": self.count,
            "skipped": self.skipped,
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "batches_per_epoch": self.batches_per_epoch,
        }
