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


class BudgetPlanner:
    """Fits a run's step count to a wall-clock budget so that the cosine schedule ends when the budget does.

    Plans first after warm-up + 5 steps, then each time the step count has doubled while less than
    three quarters of the run are done, from the step rate since the previous plan: the first steps
    (worker start-up, allocator warm-up) are slower than the rest, so one early estimate alone ends
    the run well inside its budget. A re-plan moves the cosine by a few per cent of its span, mostly
    early, when the learning rate is still near its peak. Used by single-machine pretraining and by
    the DHP coordinator (which counts completed iterations).
    """

    def __init__(self, budget_s: float, warmup_steps: int) -> None:
        self.budget_s = budget_s
        self.first = max(3, warmup_steps + 5)
        self._mark: tuple[int, float] | None = None
        """(step, elapsed seconds) of the last plan."""

    def replan(self, step: int, elapsed: float, total: int) -> int | None:
        """The new total step count when a plan is due after ``step`` steps and ``elapsed`` seconds (a
        resumed run counts its earlier part in both), else None; ``total`` is the current plan."""
        if self._mark is None:
            if step < self.first:
                return None
            per_step = elapsed / step
        elif step >= 2 * self._mark[0] and 4 * step < 3 * total:
            per_step = (elapsed - self._mark[1]) / max(1, step - self._mark[0])
        else:
            return None
        self._mark = (step, elapsed)
        return step + max(1, int((self.budget_s - elapsed) / max(per_step, 1e-9)))
