"""The optimiser of every Lite-SRL pretraining, one machine or a DHP stage: SGD (momentum 0.9, weight decay
1e-4, paper 4.3) over an encoder and a predictor group, with the per-step warm-up + cosine rate.

Single-machine pretraining (``engine.pretrain``) and every DHP stage (``engine.dhp.stage``) build their
optimiser and set their rates here, so a chain of stages steps exactly like the whole model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
from torch import nn

from engine.errors import ConfigError
from engine.lr_schedule import cosine_lr, scaled_lr
from engine.model.litesrl import PredictionHead

ENCODER, PREDICTOR = "encoder", "predictor"
"""Names of the two parameter groups."""


@dataclass(frozen=True)
class OptimConfig:
    """SGD and its learning-rate schedule; identical on all DHP nodes so a chain equals one model."""

    base_lr: float = 0.05
    """Base rate; the peak is base_lr x batch_size / 256 (``engine.lr_schedule.scaled_lr``)."""
    batch_size: int = 64
    """Mini-batch (images; the model sees 2x this rows)."""
    momentum: float = 0.9
    """SGD momentum (paper 4.3)."""
    weight_decay: float = 1e-4
    """SGD weight decay (paper 4.3)."""
    total_steps: int = 1000
    """Optimiser steps (DHP iterations) of the whole run; the cosine schedule spans them."""
    warmup_steps: int = 10
    """Linear warm-up steps before the cosine decay; keeps early BN statistics from blowing up."""
    fix_predictor_lr: bool = True
    """Keep the predictor at the peak rate instead of decaying it (SimSiam's finding: it must keep
    adapting to the encoder)."""

    @property
    def peak_lr(self) -> float:
        """The rate after warm-up."""
        return scaled_lr(self.base_lr, self.batch_size)

    def lr(self, step: int, predictor: bool = False) -> float:
        """The rate of ``step`` (0-based) for the encoder group, or the predictor group with ``predictor``."""
        if predictor and self.fix_predictor_lr:
            return self.peak_lr
        return cosine_lr(step, self.total_steps, self.peak_lr, self.warmup_steps)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OptimConfig:
        """Rebuild from ``to_dict``; ConfigError for a missing or unknown key."""
        names = {f.name for f in fields(cls)}
        if not isinstance(data, dict) or set(data) != names:
            raise ConfigError(f"optimiser settings need exactly the keys {sorted(names)}, "
                              f"got {sorted(data) if isinstance(data, dict) else data!r}")
        return cls(**data)


def build_optimizer(module: nn.Module, config: OptimConfig) -> torch.optim.SGD:
    """SGD over two groups, the encoder and the predictor (the parameters of any ``PredictionHead`` in
    ``module``: the whole model's head, or a last stage's), so that the predictor's rate can stay fixed."""
    head = {id(p) for m in module.modules() if isinstance(m, PredictionHead) for p in m.parameters()}
    encoder = [p for p in module.parameters() if id(p) not in head]
    predictor = [p for p in module.parameters() if id(p) in head]
    return torch.optim.SGD(
        [{"params": encoder, "name": ENCODER}, {"params": predictor, "name": PREDICTOR}],
        lr=0.0, momentum=config.momentum, weight_decay=config.weight_decay,
    )


def set_learning_rates(optimizer: torch.optim.Optimizer, config: OptimConfig, step: int) -> float:
    """Set the rates of ``step`` (0-based) on an optimiser from ``build_optimizer``; returns the encoder's."""
    for group in optimizer.param_groups:
        group["lr"] = config.lr(step, predictor=group.get("name") == PREDICTOR)
    return config.lr(step)
