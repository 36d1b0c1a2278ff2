"""Stage-1 data work for the CWB profile: read, decode and augment one mini-batch (both views), timed for real.

Only the node serving stage 1 does it (the paper's nodes 1-3 read the dataset), so the profile
stores it once, as ``data_ms``, and the cost model adds it to stage 1's compute. The timed path is
the one the runtime takes: ``engine.data.folder.load_images`` (decode, resize to the load size)
for ``batch_size`` files, then the pretraining view transform twice per image
(``engine.augment``), as ``engine.views.TwoViewBatches`` does. With no folder the images are
synthetic scenes written to a temporary folder first (PNG for optical, 16-bit TIFF for SAR), so
decoding is still real.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path

import torch

from engine.augment import AugmentConfig, build_view_transform
from engine.data.folder import load_images, scan_unlabelled
from engine.data.images import Modality
from engine.errors import ConfigError

SYNTHETIC_SIDE = 256
"""Side of the synthetic scenes: a little above the paper's 224 px views, as real scenes are."""


def measure_data_ms(
    batch_size: int, image_size: int, modality: Modality, *, folder: Path | None = None, repeats: int = 3, seed: int = 0
) -> float:
    """Median milliseconds to decode ``batch_size`` images of ``folder`` and make both views of each.

    Successive repeats take the next ``batch_size`` files (wrapping around), so the page cache
    helps no more than in training. Raises DataError for a folder without readable images.
    """
    if repeats < 1:
        raise ConfigError(f"repeats must be at least 1, got {repeats}")
    if folder is not None:
        return _measure(scan_unlabelled([Path(folder)]), batch_size, image_size, modality, repeats, seed)
    from engine.data.synthetic import CLASSES, generate

    with tempfile.TemporaryDirectory(prefix="litesrl-data-") as tmp:
        per_class = math.ceil(batch_size / len(CLASSES))
        generate(Path(tmp), modality, per_class=per_class, size=SYNTHETIC_SIDE, seed=seed)
        return _measure(scan_unlabelled([Path(tmp)]), batch_size, image_size, modality, repeats, seed)


def _measure(records, batch_size: int, image_size: int, modality: Modality, repeats: int, seed: int) -> float:
    channels = 1 if modality == "sar" else 3
    # Per-channel statistics only shift and scale in Normalize; their values do not change its cost.
    mean, std = torch.full((channels,), 0.5), torch.full((channels,), 0.25)
    transform = build_view_transform(modality, AugmentConfig(size=image_size), mean, std)
    generator = torch.Generator().manual_seed(seed)
    times = []
    for run in range(repeats):
        batch = [records[(run * batch_size + i) % len(records)] for i in range(batch_size)]
        start = time.perf_counter()
        images = load_images(batch, modality, image_size).images
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=generator)))
            views = torch.cat([torch.stack([transform(image) for image in images]) for _ in range(2)])
        times.append((time.perf_counter() - start) * 1000.0)
        del views
    return statistics.median(times)
