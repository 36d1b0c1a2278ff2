"""The evaluation protocol's settings (a leaf module: evaluation and fine-tuning both read it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from engine.data.split import SplitMethod
from engine.errors import ConfigError

Mode = Literal["freeze", "finetune"]
LinearSolver = Literal["logreg", "adam"]
Progress = Callable[[str, int, int], None]
"""``on_progress(what, done, total)``."""


@dataclass(frozen=True)
class EvalConfig:
    """An evaluation protocol; identical settings make encoders comparable."""

    mode: Mode = "freeze"
    """``freeze``: linear classifier on fixed backbone features. ``finetune``: backbone trained too."""
    train_fraction: float = 0.2
    """Share of each class's images with labels (paper: 10 %, 20 %, 50 %); the rest is the test set.
    With a separate test folder it is the share of the training folder used (1.0: all of it)."""
    split: SplitMethod = "stratified"
    """``stratified`` random per class, or ``block`` for sets of near-duplicate neighbours (MSTAR)."""
    block_size: int = 10
    """Files per block with ``split=block``."""
    seed: int = 0
    """Seeds the split, the classifier initialisation and the batch order."""
    image_size: int = 64
    """Side of the images fed to the encoder."""
    linear: LinearSolver = "logreg"
    """Freeze-mode linear probe: ``logreg`` = L2-regularised logistic regression solved to
    convergence by L-BFGS, its strength chosen by cross-validation on the training part only (a
    well-posed problem: the result does not depend on epochs, batch order or learning rate);
    ``adam`` = the earlier fixed-epoch Adam probe, kept to reproduce older figures."""
    knn_k: int = 20
    """Neighbours of the kNN probe reported beside the linear one in freeze mode (0: no kNN)."""
    epochs: int = 200
    """Epochs of the ``adam`` probe (paper: 200) or of fine-tuning."""
    batch_size: int = 64
    """Mini-batch of the ``adam`` probe and of fine-tuning (paper: 64)."""
    lr: float = 1e-3
    """Adam learning rate of the classifier (``adam`` probe, fine-tuning), cosine-decayed (paper 5)."""
    backbone_lr: float = 1e-4
    """Adam learning rate of the backbone when fine-tuning."""

    def __post_init__(self) -> None:
        if self.mode not in ("freeze", "finetune"):
            raise ConfigError(f"unknown evaluation mode {self.mode!r}; choose freeze or finetune")
        if self.linear not in ("logreg", "adam"):
            raise ConfigError(f"unknown linear probe {self.linear!r}; choose logreg or adam")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"train fraction must be in (0, 1), got {self.train_fraction}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be >= 1")
        if self.knn_k < 0:
            raise ConfigError(f"kNN neighbours must be >= 0, got {self.knn_k}")
