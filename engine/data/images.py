"""Decoding one image file into a uint8 tensor: optical RGB, or SAR magnitude scaled through dB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

Modality = Literal["optical", "sar"]
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
MAX_PIXELS = 100_000_000
"""Largest image decoded (100 megapixels; a full Sentinel-1 scene tile is far smaller than the crops used
here): a crafted file declaring 10^10 pixels must not make a board allocate tens of gigabytes."""


@dataclass(frozen=True)
class SarScaling:
    """How SAR magnitudes that are not already 8-bit display images are mapped to 0..255.

    16-bit and float TIFFs hold linear amplitudes; they go to dB (20 log10 a), are clipped to the
    ``low``..``high`` percentiles of the image (robust to calibration differences between sensors
    and to a few very bright scatterers), and are stretched linearly. 8-bit JPG/PNG files are
    taken as already display-scaled and used as they are.
    """

    low_percentile: float = 1.0
    """Percentile of the image's dB values mapped to 0."""
    high_percentile: float = 99.5
    """Percentile of the image's dB values mapped to 255."""
    intensity: bool = False
    """True if the TIFF holds intensity (power, |s|^2) rather than amplitude: dB = 10 log10."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(
    path: Path, modality: Modality, sar_scaling: SarScaling = SarScaling(), min_side: int | None = None
) -> torch.Tensor:
    """Decode ``path`` into a uint8 tensor (C, H, W): C = 3 for optical, 1 for SAR.

    ``min_side`` lets a JPEG decoder skip resolution it will not need (DCT scaling keeps the short
    side >= ``min_side``), which makes loading a 400 px scene for 128 px training several times faster.
    Raises ``OSError``/``ValueError`` for a file that cannot be decoded or holds more than
    :data:`MAX_PIXELS` pixels (checked from its header, before decoding); callers count and report those.
    """
    array = _read_array(path, min_side)
    if modality == "sar":
        return torch.from_numpy(_sar_to_uint8(array, sar_scaling)).unsqueeze(0)
    return torch.from_numpy(_optical_to_uint8(array)).permute(2, 0, 1).contiguous()


def _read_array(path: Path, min_side: int | None) -> np.ndarray:
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            if int(np.prod(series.shape)) > 4 * MAX_PIXELS:  # any band layout: up to 4 values a pixel
                raise ValueError(f"{path.name}: an image of shape {tuple(series.shape)} exceeds the limit of "
                                 f"{MAX_PIXELS:,} pixels")
            array = series.asarray()
        if np.iscomplexobj(array):  # single-look complex: use the magnitude
            array = np.abs(array)
        if array.ndim == 3 and array.shape[0] < array.shape[-1] and array.shape[0] <= 4:
            array = np.moveaxis(array, 0, -1)  # planar (bands, H, W) -> (H, W, bands)
        return array
    from PIL import Image

    with Image.open(path) as image:
        _check_pixels(path, image.size[1], image.size[0])
        if min_side and image.format == "JPEG":
            scale = min(image.size) / min_side
            image.draft(image.mode, (int(image.size[0] / scale + 0.5), int(image.size[1] / scale + 0.5)))
        image.load()
        if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return np.array(image)
        return np.array(image.convert("RGB") if image.mode not in ("L", "RGB") else image)


def _check_pixels(path: Path, height: int, width: int) -> None:
    if height * width > MAX_PIXELS:
        raise ValueError(f"{path.name}: {width} x {height} pixels exceeds the limit of {MAX_PIXELS:,}")


def _optical_to_uint8(array: np.ndarray) -> np.ndarray:
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.shape[2] == 4:
        array = array[:, :, :3]
    if array.shape[2] != 3:
        raise ValueError(f"expected 3 colour bands, found {array.shape[2]}")
    if array.dtype != np.uint8:
        array = _stretch(array.astype(np.float32), 0.5, 99.5)
    return np.ascontiguousarray(array)


def _sar_to_uint8(array: np.ndarray, scaling: SarScaling) -> np.ndarray:
    if array.ndim == 3:
        array = array[:, :, 0]  # first band (e.g. VH, as the paper used for OpenSARUrban)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    magnitude = np.abs(array.astype(np.float32))
    floor = max(float(magnitude[magnitude > 0].min()) if np.any(magnitude > 0) else 1e-6, 1e-10)
    db = (10.0 if scaling.intensity else 20.0) * np.log10(np.maximum(magnitude, floor))
    return _stretch(db, scaling.low_percentile, scaling.high_percentile)


def _stretch(values: np.ndarray, low_percentile: float, high_percentile: float) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError("image holds no finite values")
    low, high = np.percentile(finite, [low_percentile, high_percentile])
    if high <= low:
        high = low + 1.0
    scaled = (np.nan_to_num(values, nan=low) - low) / (high - low)
    return (np.clip(scaled, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
