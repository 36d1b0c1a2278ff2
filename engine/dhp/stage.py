"""One partition of Lite-SRL on one node: forward, backward and the local weight update (paper eq. 6-7)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch import nn

from engine.errors import ConfigError, EngineError
from engine.model import LiteSRL, ModelConfig, build_model
from engine.optim import OptimConfig, build_optimizer, set_learning_rates


@dataclass(frozen=True)
class StageSpec:
    """Which partitionable units ``[start, end)`` of which model a stage holds."""

    model: ModelConfig
    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ConfigError(f"a stage needs start < end, got [{self.start}, {self.end})")

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, data: dict) -> StageSpec:
        return cls(ModelConfig.from_dict(data["model"]), int(data["start"]), int(data["end"]))


def stage_module(model: LiteSRL, spec: StageSpec) -> nn.Sequential:
    """The units ``[start, end)`` of ``model`` as a Sequential (sharing ``model``'s parameters)."""
    units = model.partitionable_layers()
    if spec.end > len(units):
        raise ConfigError(f"stage [{spec.start}, {spec.end}) runs past the model's {len(units)} units")
    return nn.Sequential(*[module for _, module in units[spec.start : spec.end]])


def split_model(model: LiteSRL, cuts: list[int]) -> list[StageSpec]:
    """Stage specs for cut points ``cuts`` (unit indices where a new stage starts)."""
    bounds = [0, *cuts, len(model.partitionable_layers())]
    if bounds != sorted(set(bounds)):
        raise ConfigError(f"cut points {cuts} must be increasing and inside the model")
    return [StageSpec(model.config, a, b) for a, b in zip(bounds, bounds[1:])]


class StageWorker:
    """Holds a stage's module and optimiser and the autograd state of the mini-batch in flight.

    ``forward`` keeps the graph until ``backward`` brings the output gradient (or, on the last
    stage, starts from the loss). ``backward`` returns the gradient of the stage input, which is what
    travels to the previous node; the weights are then updated with this iteration's rate.
    """

    def __init__(self, spec: StageSpec, optim: OptimConfig, state: dict[str, torch.Tensor] | None = None,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.spec = spec
        self.optim_config = optim
        self.device = torch.device(device)
        model = build_model(spec.model)
        self.module = stage_module(model, spec).to(self.device)
        self.is_last = spec.end == len(model.partitionable_layers())
        self.optimizer = build_optimizer(self.module, optim)
        if state is not None:
            self.load_state_dict(state)
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, torch.Tensor] = {}

    @property
    def is_first(self) -> bool:
        return self.spec.start == 0

    def forward(self, key: int, x: torch.Tensor) -> torch.Tensor:
        """Run the stage on ``x`` for mini-batch ``key``; returns the output detached (what is sent)."""
        self.module.train()
        x = x.to(self.device)
        if not self.is_first:
            x = x.detach().requires_grad_(True)
        out = self.module(x)
        self._inputs[key] = x
        self._outputs[key] = out
        return out.detach()

    def backward(self, key: int, grad_output: torch.Tensor | None, iteration: int,
                 on_input_grad: Callable[[torch.Tensor], None] | None = None) -> torch.Tensor | None:
        """Back-propagate mini-batch ``key`` and update the weights; returns the input gradient
        (None on the first stage, which has nothing upstream).

        ``on_input_grad``, when given, receives the input gradient as soon as autograd has it, before the
        optimiser step: the previous stage can start its backward while this one updates its weights (the
        step does not change that gradient), which takes the heaviest stage's update off the chain's path."""
        x, out = self._inputs.pop(key), self._outputs.pop(key)
        if self.is_last:
            out.backward()
        else:
            assert grad_output is not None  # only the last stage starts backward without an output gradient
            out.backward(grad_output.to(self.device))
        input_grad = None
        if not self.is_first:
            assert x.grad is not None  # every stage's input but the first requires grad
            input_grad = x.grad.detach()
            if on_input_grad is not None:
                on_input_grad(input_grad)
        set_learning_rates(self.optimizer, self.optim_config, iteration)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return input_grad

    def reschedule(self, optim: OptimConfig) -> None:
        """Continue with ``optim``, which may differ from the current settings in ``total_steps`` only (a time
        budget re-planned the run)."""
        if replace(optim, total_steps=self.optim_config.total_steps) != self.optim_config:
            raise EngineError("a re-planned schedule may change the run's total steps only")
        self.optim_config = optim

    def discard(self, key: int) -> None:
        """Drop the state of a mini-batch whose chain was aborted."""
        self._inputs.pop(key, None)
        self._outputs.pop(key, None)

    def in_flight(self) -> list[int]:
        return list(self._inputs)

    def state_dict(self, momentum: bool = False) -> dict[str, torch.Tensor]:
        """Parameters and BN buffers, for averaging and checkpoints; with ``momentum``, also the SGD momentum
        buffers (keys ``momentum:<parameter>``), so that a resumed run continues exactly."""
        state = {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}
        if momentum:
            for name, param in self.module.named_parameters():
                buffer = self.optimizer.state.get(param, {}).get("momentum_buffer")
                if buffer is not None:
                    state[MOMENTUM_PREFIX + name] = buffer.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load parameters and BN buffers, and the momentum buffers among them if any."""
        weights, momentum = split_momentum(state)
        self.module.load_state_dict(weights)
        params = dict(self.module.named_parameters())
        buffers = {key.removeprefix(MOMENTUM_PREFIX): value for key, value in momentum.items()}
        unknown = sorted(set(buffers) - set(params))
        if unknown:
            raise EngineError(f"momentum for parameter(s) this stage does not have: {', '.join(unknown[:3])}")
        for name, buffer in buffers.items():
            self.optimizer.state[params[name]]["momentum_buffer"] = buffer.detach().to(self.device).clone()


MOMENTUM_PREFIX = "momentum:"
"""Marks an SGD momentum buffer among a stage's state entries (module keys never contain a colon)."""


def split_momentum(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(weights and buffers, momentum entries)`` of a stage state; the entries keep their prefix."""
    weights = {k: v for k, v in state.items() if not k.startswith(MOMENTUM_PREFIX)}
    momentum = {k: v for k, v in state.items() if k.startswith(MOMENTUM_PREFIX)}
    return weights, momentum
