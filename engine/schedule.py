"""Learning-rate schedule: linear warm-up then cosine decay to zero (per step)."""

from __future__ import annotations

import math


def scaled_lr(base_lr: float, batch_size: int) -> float:
    """The linear scaling rule of SimSiam/Goyal et al.: lr = base_lr x batch / 256.

    The paper states lr 0.05 at batch 64 without a rule; we read 0.05 as the base (SimSiam's own
    base), so batch 64 trains at 0.0125 and a change of batch size keeps the per-sample step.
    """
    return base_lr * batch_size / 256.0


def cosine_lr(step: int, total_steps: int, peak_lr: float, warmup_steps: int = 0) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``."""
    if warmup_steps and step < warmup_steps:
        return peak_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * peak_lr * (1.0 + math.cos(math.pi * progress))
