"""Optimiser of the paper (SGD, momentum 0.9, weight decay 1e-4) with a per-step cosine schedule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from engine.schedule import cosine_lr, scaled_lr

if TYPE_CHECKING:
    from engine.pretrain import PretrainConfig


def build_optimizer(model: torch.nn.Module, momentum: float, weight_decay: float) -> torch.optim.SGD:
    """SGD over two groups, encoder and predictor, so the predictor's rate can stay fixed."""
    predictor = [p for name, p in model.named_parameters() if name.startswith("head.")]
    encoder = [p for name, p in model.named_parameters() if not name.startswith("head.")]
    return torch.optim.SGD(
        [{"params": encoder, "name": "encoder"}, {"params": predictor, "name": "predictor"}],
        lr=0.0, momentum=momentum, weight_decay=weight_decay,
    )


def set_learning_rates(optimizer: torch.optim.Optimizer, config: "PretrainConfig", step: int) -> float:
    """Set this step's rates; returns the encoder's."""
    peak = scaled_lr(config.base_lr, config.batch_size)
    lr = cosine_lr(step, config.steps, peak, config.warmup_steps)
    for group in optimizer.param_groups:
        fixed = group.get("name") == "predictor" and config.fix_predictor_lr
        group["lr"] = peak if fixed else lr
    return lr
