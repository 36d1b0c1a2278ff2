"""Mixed precision for pretraining: fp32, bf16 autocast (CPU or GPU), or fp16 autocast with a gradient scaler (GPU)."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

from engine.errors import ConfigError

Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS = ("fp32", "bf16", "fp16")


class MixedPrecision:
    """Runs the forward pass under autocast and the backward/step with loss scaling where fp16 needs it.

    bf16 keeps fp32's exponent range, so it needs no scaler; fp16 gradients underflow without one
    (``torch.amp.GradScaler``), and CPU autocast has no fp16 kernels worth using, so fp16 is CUDA-only.
    Weights and optimiser state stay fp32 in every mode.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        if precision == "fp16" and device.type != "cuda":
            raise ConfigError("fp16 needs a CUDA GPU; use --precision bf16 on a CPU")
        self.precision = precision
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass (and loss) runs in."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()`` and ``optimizer.step()``, scaled and unscaled under fp16 (a step whose
        gradients overflowed is skipped and the scale lowered, as GradScaler does)."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
