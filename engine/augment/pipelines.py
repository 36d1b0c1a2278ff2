"""The view pipelines of paper 4.2 (Fig. 5): spatial transforms for both modalities, colour
("temporal") transforms for optical only, speckle and mild radiometry for SAR."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torchvision.transforms import v2

from engine.augment.ops import GammaSpeckle, InscribedCrop, RandomRot90
from engine.data.images import Modality


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
    rotation: Literal["rot90", "any"] = "rot90"
    """``rot90``: exact quarter turns. ``any``: a uniform angle, then the largest centred square
    that holds no empty corner (side / sqrt 2) -- for overhead views and SAR targets, whose
    azimuth is arbitrary; it costs the image's border, so load images larger."""


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
        radiometric = [
            v2.ToDtype(torch.float32, scale=True),
            v2.RandomApply([GammaSpeckle()], p=config.speckle_probability),
            v2.RandomApply([v2.ColorJitter(brightness=0.2, contrast=0.2)], p=config.colour_probability),
            _blur(config.size, config.blur_probability),
        ]
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
