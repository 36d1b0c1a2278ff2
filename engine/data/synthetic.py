"""Seeded synthetic remote-sensing scenes (optical RGB and SAR amplitude with speckle) for the demo and fast tests.

Five land-cover-like classes with distinct texture statistics, so a classifier can separate them
and self-supervised features have something real to learn: field stripes, forest blobs, calm water,
a street grid of buildings, and bare ground with fine grain. Every image is drawn from its own
seeded generator, so a dataset is identical wherever it is generated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from engine.data.images import Modality
from engine.errors import ConfigError

CLASSES = ("field", "forest", "water", "urban", "bare")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: a coarse random grid bilinearly upsampled to ``size``, in [0, 1]."""
    grid = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, size, endpoint=False)
    i = coords.astype(int)
    f = coords - i
    top = grid[i][:, i] * (1 - f)[None, :] + grid[i][:, i + 1] * f[None, :]
    bottom = grid[i + 1][:, i] * (1 - f)[None, :] + grid[i + 1][:, i + 1] * f[None, :]
    return top * (1 - f)[:, None] + bottom * f[:, None]


def _pattern(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """Scene reflectance in [0, 1], (size, size)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    name = CLASSES[label]
    if name == "field":
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(6, 12)
        stripes = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle))))
        return 0.35 + 0.35 * stripes + 0.1 * _smooth_noise(rng, size, 4)
    if name == "forest":
        return 0.25 + 0.5 * _smooth_noise(rng, size, int(rng.integers(8, 14))) ** 2
    if name == "water":
        ripple = np.sin(2 * np.pi * rng.uniform(2, 4) * (x + 0.3 * _smooth_noise(rng, size, 3)))
        return 0.08 + 0.04 * ripple + 0.05 * _smooth_noise(rng, size, 2)
    if name == "urban":
        pitch = int(rng.integers(max(4, size // 12), max(6, size // 6)))
        cells = (np.floor(y * size / pitch) + np.floor(x * size / pitch)).astype(int)
        blocks = ((np.arange(size) % pitch) < pitch * 0.7)
        buildings = blocks[:, None] & blocks[None, :]
        heights = rng.random(cells.max() + 1)[cells]
        return np.where(buildings, 0.45 + 0.5 * heights, 0.15)
    grain = rng.random((size, size))
    return 0.55 + 0.25 * grain + 0.1 * _smooth_noise(rng, size, 3)


def _optical(label: int, rng: np.random.Generator, size: int) -> np.ndarray:
    palette = {
        "field": (0.55, 0.6, 0.3), "forest": (0.2, 0.45, 0.2), "water": (0.15, 0.3, 0.55),
        "urban": (0.6, 0.55, 0.55), "bare": (0.75, 0.65, 0.45),
    }[CLASSES[label]]
    base = _pattern(label, rng, size)
    tint = np.array(palette) * rng.uniform(0.85, 1.15, 3)
    rgb = base[:, :, None] * tint[None, None, :] * 1.6 + rng.normal(0, 0.02, (size, size, 3))
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8)


def _sar(label: int, rng: np.random.Generator, size: int, looks: int = 2) -> np.ndarray:
    """Amplitude with fully developed multiplicative speckle (intensity ~ Gamma(L, 1/L))."""
    reflectivity = _pattern(label, rng, size) ** 2
    if CLASSES[label] == "urban":  # corner reflectors: a few very bright scatterers
        points = rng.integers(0, size, (size // 4, 2))
        reflectivity[points[:, 0], points[:, 1]] = 25.0
    speckle = rng.gamma(looks, 1.0 / looks, (size, size))
    amplitude = np.sqrt(reflectivity * speckle)
    return np.clip(amplitude * 8000, 0, 65535).astype(np.uint16)


def generate(
    root: Path,
    modality: Modality,
    per_class: int = 40,
    size: int = 64,
    seed: int = 0,
    classes: int = len(CLASSES),
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write an ImageFolder tree ``root/<class>/<class>_NNNN.<ext>`` and return ``root``.

    Optical scenes are 8-bit RGB PNG; SAR scenes are 16-bit amplitude TIFF, so the demo exercises
    the dB scaling path that real SAR products need.
    """
    import tifffile
    from PIL import Image

    if not 1 <= classes <= len(CLASSES):
        raise ConfigError(f"synthetic data has 1 to {len(CLASSES)} classes, asked for {classes}")
    if per_class < 1 or size < 16:
        raise ConfigError("synthetic data needs at least 1 image per class and 16 px images")
    root = Path(root)
    total = classes * per_class
    for label in range(classes):
        folder = root / CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            rng = np.random.default_rng([seed, label, index])
            name = f"{CLASSES[label]}_{index:04d}"
            if modality == "sar":
                tifffile.imwrite(folder / f"{name}.tif", _sar(label, rng, size))
            else:
                Image.fromarray(_optical(label, rng, size)).save(folder / f"{name}.png")
            if on_progress:
                on_progress(label * per_class + index + 1, total)
    return root
