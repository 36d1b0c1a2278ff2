"""Emulated board timing for one DHP stage: target compute and transfer durations from a CWB profile.

Without Jetsons, a node agent runs its stage for real on the host and then *stretches* each step
to what the profiled board would take (paper 3.3.1: CWB measures every layer's forward and
backward on the TX2), divided by the node's ``speed`` and multiplied by ``time_scale`` (0.1 runs
ten times faster than the board, keeping every ratio). A cut's tensors are paced to their
*virtual* size, the profile's ``output_bytes`` of the layer before the cut, over the emulated link
(``engine.cwb.transfer``: bytes / bandwidth + latency); the gradient sent back has the same size.
A stage-1 node really builds each mini-batch (augments the two views from its decoded images) and
stretches that to the profile's ``data_ms``, the board's measured time to read, decode and augment one.

When the real work is slower than its target the step is not shortened to fit: the overrun is
counted and reported (``overruns``), so an emulated timing that the host could not honour shows.
The stage's memory need is CWB's own formula (``engine.cwb.cost.CostModel.memory_bytes``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from engine.cwb.cost import CostModel
from engine.cwb.profile_format import Profile
from engine.cwb.transfer import Network
from engine.cwb.units import format_bytes
from engine.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageMemory:
    """Training memory of one stage on a node, by kind (bytes); ``total`` is CWB's stage memory."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    """What autograd keeps from forward to backward."""
    buffers: int
    """Cut buffers: 2 x the incoming activation size and 2 x the outgoing one (receive + gradient)."""

    @property
    def total(self) -> int:
        """Everything the stage needs."""
        return self.weights + self.gradients + self.optimizer + self.activations + self.buffers

    def check(self, budget_bytes: int, who: str) -> None:
        """Raise ConfigError naming every part when the stage does not fit ``budget_bytes``."""
        if self.total > budget_bytes:
            raise ConfigError(
                f"{who} needs {format_bytes(self.total)} (weights {format_bytes(self.weights)}, gradients "
                f"{format_bytes(self.gradients)}, optimizer {format_bytes(self.optimizer)}, activations "
                f"{format_bytes(self.activations)}, cut buffers {format_bytes(self.buffers)}) but the memory "
                f"budget is {format_bytes(budget_bytes)}"
            )


def stage_memory(profile: Profile, start: int, end: int) -> StageMemory:
    """Memory of a stage holding profile units ``[start, end)``, split by kind."""
    _check_range(profile, start, end)
    layers = profile.layers[start:end]
    # CostModel prices transfers too and so wants a network; memory does not depend on it.
    total = CostModel(profile, Network(bandwidth=1.0)).memory_bytes(start, end)
    state = sum(layer.state_bytes for layer in layers)
    return StageMemory(
        weights=sum(layer.param_bytes for layer in layers),
        gradients=sum(layer.grad_bytes for layer in layers),
        optimizer=sum(layer.optimizer_bytes for layer in layers),
        activations=sum(layer.activation_bytes for layer in layers),
        buffers=total - state,
    )


class Emulation:
    """Target durations of one stage on an emulated board, and the pacing that enforces them."""

    def __init__(
        self,
        *,
        speed: float,
        time_scale: float,
        forward_ms: float,
        backward_ms: float,
        output_bytes: int,
        input_bytes: int,
        bandwidth: float,
        latency_ms: float = 0.0,
        data_ms: float = 0.0,
    ) -> None:
        """``forward_ms``/``backward_ms``: the stage on the profiled board; ``output_bytes``: the virtual
        size of the activation it sends (0 on the last stage); ``input_bytes``: that of the activation it
        receives, whose gradient it sends back (0 on the first stage); ``bandwidth`` in bytes/s;
        ``data_ms``: building one mini-batch on the board (stage 1 only, else 0)."""
        for name, value in (("speed", speed), ("time scale", time_scale)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ConfigError(f"emulated {name} must be a finite number > 0, got {value!r}")
        if not all(math.isfinite(x) and x >= 0 for x in (forward_ms, backward_ms, output_bytes, input_bytes, data_ms)):
            raise ConfigError("emulated stage times and sizes must be finite and not negative")
        self.speed, self.time_scale = float(speed), float(time_scale)
        self.forward_ms, self.backward_ms = float(forward_ms), float(backward_ms)
        self.data_ms = float(data_ms)
        self.output_bytes, self.input_bytes = int(output_bytes), int(input_bytes)
        self.network = Network(bandwidth=bandwidth, latency_ms=latency_ms)
        self.stretches = 0
        """Steps paced so far."""
        self.overruns = 0
        """Steps whose real duration exceeded the target (not shortened, only counted)."""
        self.overrun_s = 0.0
        """Seconds by which those steps exceeded their targets, summed."""
        self.worst_overrun_s = 0.0
        """The largest single overrun, seconds."""

    @classmethod
    def from_profile(
        cls, profile: Profile, start: int, end: int, *, speed: float, time_scale: float,
        bandwidth: float, latency_ms: float = 0.0,
    ) -> Emulation:
        """The emulation of a stage holding profile units ``[start, end)``; the first stage also builds batches."""
        _check_range(profile, start, end)
        layers = profile.layers[start:end]
        return cls(
            data_ms=profile.data_ms if start == 0 else 0.0,
            speed=speed,
            time_scale=time_scale,
            forward_ms=sum(layer.forward_ms for layer in layers),
            backward_ms=sum(layer.backward_ms for layer in layers),
            output_bytes=layers[-1].output_bytes if end < len(profile.layers) else 0,
            input_bytes=profile.layers[start - 1].output_bytes if start > 0 else 0,
            bandwidth=bandwidth,
            latency_ms=latency_ms,
        )

    @property
    def forward_s(self) -> float:
        """Target seconds of the stage's forward: profile ms x time_scale / speed."""
        return self.forward_ms * self.time_scale / self.speed / 1000.0

    @property
    def data_s(self) -> float:
        """Target seconds to build one mini-batch (stage 1): profile ms x time_scale / speed."""
        return self.data_ms * self.time_scale / self.speed / 1000.0

    @property
    def backward_s(self) -> float:
        """Target seconds of the stage's backward (and weight update)."""
        return self.backward_ms * self.time_scale / self.speed / 1000.0

    @property
    def activation_send_s(self) -> float:
        """Target seconds to send the activation forward: time_scale x (virtual bytes / bandwidth + latency)."""
        return self._transfer_s(self.output_bytes)

    @property
    def gradient_send_s(self) -> float:
        """Target seconds to send the input gradient back (the size of the activation received)."""
        return self._transfer_s(self.input_bytes)

    def _transfer_s(self, nbytes: int) -> float:
        if nbytes == 0:
            return 0.0
        return self.time_scale * self.network.message_ms(nbytes, "src", "dst") / 1000.0

    async def stretch(self, started_at: float, target_s: float) -> float:
        """Sleep until ``started_at + target_s`` (``time.monotonic`` seconds); returns the overrun (0 if none).

        Never busy-waits. A step that already took longer is counted in ``overruns``, not hidden.
        """
        self.stretches += 1
        remaining = started_at + target_s - time.monotonic()
        if remaining > 0:
            await asyncio.sleep(remaining)
            return 0.0
        over = -remaining
        self.overruns += 1
        self.overrun_s += over
        self.worst_overrun_s = max(self.worst_overrun_s, over)
        log.debug("emulated step overran its %.3f s target by %.3f s", target_s, over)
        return over

    def report(self) -> dict[str, float | int]:
        """Pacing statistics for telemetry: steps paced, overruns, overrun seconds (total and worst)."""
        return {
            "stretches": self.stretches,
            "overruns": self.overruns,
            "overrun_s": self.overrun_s,
            "worst_overrun_s": self.worst_overrun_s,
        }


def _check_range(profile: Profile, start: int, end: int) -> None:
    if not 0 <= start < end <= len(profile.layers):
        raise ConfigError(f"stage units [{start}, {end}) must lie inside the profile's {len(profile.layers)} units")
