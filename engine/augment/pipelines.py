"""The view pipelines of paper 4.2 (Fig. 5): spatial transforms for both modalities, colour
("temporal") transforms for optical only, speckle and mild radiometry for SAR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torchvision.transforms import v2

from engine.augment.ops import GammaSpeckle, InscribedCrop, RandomPowerLaw, RandomRot90
from engine.data.images import Modality
from engine.errors import ConfigError


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of the view augmentations; the defaults are the paper's/issue's settings."""

    size: int = 64
    """Output side of each view in pixels."""
    crop_scale: tuple[float, float] = (0.2, 1.0)
    """Area fraction range of the random resized crop."""
    blur_probability: float = 0.5
    """Probability of a Gaussian blur (sigma 0.1-2.0 px, scaled to the view size)."""
    colour_probability: float = 0.8
    """Optical: probability of colour jitter 0.4/0.4/0.4/0.1. SAR: of brightness/contrast 0.2/0.2."""
    grayscale_probability: float = 0.2
    """Optical only: probability of converting to grey (kept 3 channels)."""
    speckle_probability: float = 0.5
    """SAR only: probability of extra multiplicative Gamma speckle."""
    sar_radiometry: Literal["mild", "strong"] = "mild"
    """SAR only: ``mild`` (speckle of 2-10 looks with ``speckle_probability``, brightness/contrast 0.2) or
    ``strong`` (speckle of 1-4 looks with probability 0.8, brightness/contrast 0.4, and a random display
    power law I**g, g in 0.5-2): see ``SAR_RADIOMETRY``."""
    rotation: Literal["rot90", "any"] = "rot90"
    """``rot90``: exact quarter turns. ``any``: a uniform angle, then the largest centred square
    that holds no empty corner (side / sqrt 2) -- for overhead views and SAR targets, whose
    azimuth is arbitrary; it costs the image's border, so load images larger."""

    def __post_init__(self) -> None:
        _check(self)


@dataclass(frozen=True)
class SarRadiometry:
    """How far two views of one SAR chip may differ in grey levels."""

    speckle_looks: tuple[float, float]
    speckle_probability: float | None  # None: AugmentConfig.speckle_probability
    jitter: float
    power_law: tuple[float, float] | None


SAR_RADIOMETRY = {
    "mild": SarRadiometry((2.0, 10.0), None, 0.2, None),
    # Two views of one chip share its clutter, whose grey levels alone can match them; re-imaging the
    # chip with harsher speckle and another display mapping leaves the target's shape as the cue.
    "strong": SarRadiometry((1.0, 4.0), 0.8, 0.4, (0.5, 2.0)),
}


def _check(config: AugmentConfig) -> None:
    if config.sar_radiometry not in SAR_RADIOMETRY:
        raise ConfigError(f"unknown SAR radiometry {config.sar_radiometry!r}; choose {' or '.join(SAR_RADIOMETRY)}")
    if config.rotation not in ("rot90", "any"):
        raise ConfigError(f"unknown rotation {config.rotation!r}; choose rot90 or any")


def _blur(size: int, probability: float) -> v2.Transform:
    kernel = max(3, (size // 10) | 1)  # ~10 % of the view, odd, as SimCLR/SimSiam do at 224 px
    return v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0 * size / 224 + 0.1))], p=probability)


def build_view_transform(modality: Modality, config: AugmentConfig, mean: torch.Tensor, std: torch.Tensor) -> v2.Transform:
    """Random view of one uint8 image (C, H, W) -> normalised float (C, size, size)."""
    spatial = [
        v2.RandomResizedCrop(config.size, scale=config.crop_scale, antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomVerticalFlip(),
        RandomRot90(),
    ]
    if config.rotation == "any":
        spatial = [v2.RandomRotation(180.0, interpolation=v2.InterpolationMode.BILINEAR), InscribedCrop()] + spatial
    if modality == "optical":
        radiometric = [
            v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=config.colour_probability),
            v2.RandomGrayscale(p=config.grayscale_probability),
            _blur(config.size, config.blur_probability),
            v2.ToDtype(torch.float32, scale=True),
        ]
    else:
        # No hue, saturation or grey conversion: a SAR magnitude has one channel and no colour.
        sar = SAR_RADIOMETRY[config.sar_radiometry]
        speckle_probability = config.speckle_probability if sar.speckle_probability is None else sar.speckle_probability
        radiometric = [
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([GammaSpeckle(sar.speckle_looks)], p=speckle_probability),
            v2.RandomApply([v2.ColorJitter(brightness=sar.jitter, contrast=sar.jitter)], p=config.colour_probability),
            _blur(config.size, config.blur_probability),
        ]
        if sar.power_law is not None:
            radiometric.insert(2, v2.RandomApply([RandomPowerLaw(sar.power_law)], p=config.colour_probability))
    return v2.Compose(spatial + radiometric + [v2.Normalize(mean.tolist(), std.tolist())])


def eval_transform(size: int, mean: torch.Tensor, std: torch.Tensor) -> v2.Transform:
    """Deterministic evaluation view: resize to ``size`` and normalise."""
    return v2.Compose([
        v2.Resize(size, antialias=True),
        v2.CenterCrop(size),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean.tolist(), std.tolist()),
    ])


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units."""
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).float() / 255.0
    return flat.mean(dim=1), flat.std(dim=1).clamp_min(1e-3)
