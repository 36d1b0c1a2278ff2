"""Mini-batches of two augmented views, reproducible from (seed, step) alone.

Each batch's image order and augmentation randomness derive only from the run seed and the global
step, so a resumed run, a run with or without a loader process, and every node of a cluster that
reads batch k all see exactly the same views.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2


def epoch_order(num_images: int, epoch: int, seed: int) -> torch.Tensor:
    """Permutation of the images for ``epoch``."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_images, generator=generator)


def batch_indices(num_images: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Image indices of global ``step``; epochs drop their last partial batch (BN needs full batches)."""
    per_epoch = num_images // batch_size
    epoch, position = divmod(step, per_epoch)
    order = epoch_order(num_images, epoch, seed)
    return order[position * batch_size : (position + 1) * batch_size]


class TwoViewBatches(Dataset):
    """Item ``k`` is the (2B, C, S, S) batch of step ``start_step + k``: view a stacked over view b."""

    def __init__(self, images: torch.Tensor, transform: v2.Transform, batch_size: int, seed: int, start_step: int,
                 total_steps: int) -> None:
        if images.shape[0] < batch_size:
            raise ValueError(f"{images.shape[0]} images cannot fill a batch of {batch_size}")
        self.images = images
        self.transform = transform
        self.batch_size = batch_size
        self.seed = seed
        self.start_step = start_step
        self.total_steps = total_steps

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step)

    def __getitem__(self, k: int) -> torch.Tensor:
        step = self.start_step + k
        index = batch_indices(self.images.shape[0], self.batch_size, step, self.seed)
        selected = self.images[index]
        with torch.random.fork_rng(devices=[]):  # v2 transforms draw from the global generator
            torch.manual_seed(self.seed * 7_919 + step)
            view_a = torch.stack([self.transform(image) for image in selected])
            view_b = torch.stack([self.transform(image) for image in selected])
        return torch.cat([view_a, view_b])


def view_loader(batches: TwoViewBatches, workers: int) -> DataLoader:
    """Iterate the batches in order; ``workers`` > 0 augments in background processes while the
    model trains (one process is enough on a 2-core board and keeps the view order fixed)."""
    return DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=workers,
        persistent_workers=False, prefetch_factor=2 if workers else None,
        worker_init_fn=_one_thread if workers else None,
    )


def _one_thread(_: int) -> None:
    torch.set_num_threads(1)
