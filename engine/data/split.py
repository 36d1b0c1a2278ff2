"""Train/test splits by proportion: stratified per class, or by contiguous blocks of files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

from engine.errors import ConfigError, DataError

SplitMethod = Literal["stratified", "block"]


def split_indices(
    labels: torch.Tensor,
    train_fraction: float,
    seed: int,
    method: SplitMethod = "stratified",
    block_size: int = 10,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and test parts; every class keeps ``train_fraction`` of its images.

    ``stratified`` draws images at random within each class. ``block`` keeps each run of
    ``block_size`` consecutive files (in file-name order, which is the order of ``labels``) on one
    side, for sets like MSTAR where neighbouring files are near-duplicate views of one vehicle and a
    random split would put a twin of every test image in the training set.
    At least one image per class goes to each side.
    """
    if not 0.0 < train_fraction < 1.0:
        raise ConfigError(f"train fraction must be between 0 and 1 (exclusive), got {train_fraction}")
    if method not in ("stratified", "block"):
        raise ConfigError(f"unknown split method {method!r}; choose stratified or block")
    if block_size < 1:
        raise ConfigError(f"block size must be >= 1, got {block_size}")
    generator = torch.Generator().manual_seed(seed)
    train: list[int] = []
    test: list[int] = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten().tolist()
        if len(members) < 2:
            raise DataError(f"class {label} has {len(members)} image(s); a split needs at least 2")
        unit = block_size if method == "block" else 1
        groups = [members[i : i + unit] for i in range(0, len(members), unit)]
        order = torch.randperm(len(groups), generator=generator).tolist()
        wanted = min(max(1, round(train_fraction * len(members))), len(members) - 1)
        taken: list[int] = []
        for position in order:
            if len(taken) >= wanted:
                test.extend(groups[position])
            else:
                taken.extend(groups[position])
        if len(taken) == len(members):  # one block held the whole class: the test side needs one
            test.append(taken.pop())
        train.extend(taken)
    return torch.tensor(sorted(train)), torch.tensor(sorted(test))


def class_counts(labels: torch.Tensor, num_classes: int) -> Sequence[int]:
    return torch.bincount(labels, minlength=num_classes).tolist()
