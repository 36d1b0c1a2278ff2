"""CWB profiler (paper 3.3.1, 6.1): time and memory of every partitionable unit of Lite-SRL on a real device.

What each field of the resulting ``Profile`` means, and how it is measured:

* ``forward_ms`` / ``backward_ms``: each unit runs on its real input, the previous unit's output
  (one forward of the whole chain provides them), cloned afresh for every repetition so in-place
  ops never corrupt the next one. The input requires grad (except the images fed to the first
  unit), so the backward includes the input gradient a stage would send upstream; the head's
  backward starts from the loss, every other unit's from a gradient of its output's shape.
  ``warmup`` untimed runs, then the median of ``repeats`` timed ones; CUDA uses events.
* ``param_bytes``: the unit's parameters *and* buffers (BatchNorm running mean/var and batch
  counter), because a stage must hold both; ``grad_bytes``: the trainable parameters only.
* ``optimizer_bytes``: the state a real optimizer step allocates, counted after one step with
  ``lr = 0`` (SGD with momentum: 1x parameters, Adam: 2x plus a scalar step count per tensor,
  SGD without momentum: 0).
* ``activation_bytes``: what autograd really keeps for backward, read with
  ``torch.autograd.graph.saved_tensors_hooks`` during one forward of the chain. Storages are
  counted once, by the first unit that saves them (a ReLU output saved by the ReLU and again by
  the next conv counts once), so the units add up to the whole model's saved memory; weights
  and buffers are left out (they are ``param_bytes``).
* ``output_bytes``: the unit's output, what a cut after it sends forward (and its gradient back).
* ``paper_bytes``: the unit counted as the paper counts memory (section 5.1, "the inputs and outputs
  of each layer" plus parameters, gradients and momentum): the input and output bytes of every
  leaf module call inside the unit, plus ``param_bytes + grad_bytes + optimizer_bytes``. Summed over
  ResNet-18 at batch 64 it is the paper's 7599.7 MB within 0.2 % (read as MiB); it holds each
  tensor twice (one layer's output is the next one's input), hence about 2.7x the exact count.

Sizes can be read without compute on the ``meta`` device (``measure_memory``): the numbers are
the same as on a real device, so byte counts at 224 px x batch 64 need no 8 GB of RAM.
"""

from __future__ import annotations

import datetime
import functools
import logging
import platform
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import nn

from engine.cwb.profile_format import LayerProfile, Profile, ProfileSettings
from engine.device import resolve_device
from engine.errors import ConfigError
from engine.model import ModelConfig, build_model

log = logging.getLogger(__name__)

Optimizer = Literal["sgd", "adam", "sgd-nomomentum"]
DType = Literal["float32", "float16"]
Clock = Literal["wall", "process"]
OPTIMIZERS = ("sgd", "adam", "sgd-nomomentum")
DTYPES = {"float32": torch.float32, "float16": torch.float16}
MIN_IMAGE_SIZE = 32
"""Smallest input side: the ImageNet stem divides by 32, so layer4 still sees a 1 x 1 map."""


@dataclass(frozen=True)
class ProfilerConfig:
    """What to profile: the model and the training settings the paper says CWB needs (6.1)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone, head variant, input channels and stem of the model."""
    batch_size: int = 64
    """Images per mini-batch; the model runs both views, ``2 x batch_size`` rows (paper: 64)."""
    image_size: int = 224
    """Side of each view in pixels (paper: 224)."""
    optimizer: Optimizer = "sgd"
    """``sgd`` with momentum 0.9 (the paper's), ``adam``, or ``sgd-nomomentum``; sets the optimizer state."""
    dtype: DType = "float32"
    """``float32`` (the paper's) or ``float16`` (model and inputs in half precision, no fp32 master copy)."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``meta`` is accepted by ``measure_memory`` only."""
    repeats: int = 5
    """Timed runs per unit; the median is kept."""
    clock: Clock = "wall"
    """``wall`` (CUDA events on a GPU), or ``process``: CPU time of this process (``time.process_time``), which
    other programs' load on a shared machine does not inflate; it equals wall time only with one torch thread."""
    warmup: int = 2
    """Untimed runs per unit before timing (allocator and kernel selection settle)."""
    seed: int = 0
    """Seed of the weights and the random input batch."""

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if not isinstance(self.image_size, int) or self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"image size must be an integer of at least {MIN_IMAGE_SIZE} px, got {self.image_size!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown dtype {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        if self.repeats < 1:
            raise ConfigError(f"repeats must be at least 1, got {self.repeats}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be 0 or more, got {self.warmup}")
        if self.clock not in ("wall", "process"):
            raise ConfigError(f"unknown clock {self.clock!r}; choose wall or process")


@dataclass(frozen=True)
class UnitMemory:
    """The byte counts of one partitionable unit (see the module docstring for each)."""

    name: str
    """Unit name from ``LiteSRL.partitionable_layers()``."""
    kind: str
    """``conv``, ``bn``, ``relu``, ``pool``, ``block``, ``flatten``, ``linear`` or ``head``."""
    shape: tuple[int, ...]
    """Output shape (``()`` for the head's scalar loss)."""
    input_numel: int
    """Elements of the unit's input: its work grows with it (used to rescale times between sizes)."""
    param_bytes: int
    """Parameters and buffers."""
    grad_bytes: int
    """Gradients of the trainable parameters."""
    optimizer_bytes: int
    """Optimizer state after one step."""
    activation_bytes: int
    """Storages autograd saves for backward, each counted once, by the first unit saving it."""
    output_bytes: int
    """The output tensor sent forward at a cut after the unit."""
    paper_bytes: int = 0
    """The paper's count (5.1): leaf layer calls' inputs + outputs, plus weights, gradients, optimizer state."""


ProgressCallback = Callable[[int, int, LayerProfile], None]
"""``on_unit(index, total, layer)``, called after each unit is measured."""


def profile_model(config: ProfilerConfig, on_unit: ProgressCallback | None = None) -> Profile:
    """Measure every partitionable unit of ``config.model`` on ``config.device``; returns the Profile.

    Raises ConfigError for bad settings (e.g. ``cuda`` without a GPU, or ``meta``).
    """
    device = resolve_device(config.device)
    if device.type == "meta":
        raise ConfigError("the meta device has no clock; use measure_memory for byte counts")
    if device.type == "cuda" and config.clock == "process":
        raise ConfigError("the process clock times the CPU; profile a GPU with the wall clock (CUDA events)")
    model, units, images = _setup(config, device)
    memory, inputs = _memory_pass(model, units, images, config.optimizer)
    layers = []
    for index, ((name, unit), mem, x) in enumerate(zip(units, memory, inputs)):
        forward_ms, backward_ms = _time_unit(unit, x, index > 0, config, device)
        layer = LayerProfile(
            name=name, forward_ms=forward_ms, backward_ms=backward_ms, param_bytes=mem.param_bytes,
            grad_bytes=mem.grad_bytes, optimizer_bytes=mem.optimizer_bytes, activation_bytes=mem.activation_bytes,
            output_bytes=mem.output_bytes, kind=mem.kind, shape=mem.shape, paper_bytes=mem.paper_bytes,
        )
        log.debug("%s: forward %.2f ms, backward %.2f ms", name, forward_ms, backward_ms)
        layers.append(layer)
        if on_unit is not None:
            on_unit(index, len(units), layer)
    return Profile(settings=_settings(config, device), layers=tuple(layers))


def measure_memory(config: ProfilerConfig, *, device: str | None = None) -> tuple[UnitMemory, ...]:
    """Byte counts of every unit; ``device="meta"`` computes them for any size without running kernels."""
    target = torch.device("meta") if device == "meta" else resolve_device(device or config.device)
    model, units, images = _setup(config, target)
    return tuple(_memory_pass(model, units, images, config.optimizer)[0])


def _setup(config: ProfilerConfig, device: torch.device):
    """The model in training mode on ``device``, its units, and a random two-view batch (2B, C, H, W)."""
    torch.manual_seed(config.seed)
    dtype = DTYPES[config.dtype]
    model = build_model(config.model).to(device=device, dtype=dtype).train()
    shape = (2 * config.batch_size, config.model.in_channels, config.image_size, config.image_size)
    if device.type == "meta":
        images = torch.empty(shape, device=device, dtype=dtype)
    else:
        images = torch.randn(shape, generator=torch.Generator().manual_seed(config.seed), dtype=dtype).to(device)
    return model, model.partitionable_layers(), images


def _storage_key(tensor: torch.Tensor) -> int:
    # The address of the storage object, not its data pointer: every meta tensor's data_ptr is 0.
    return tensor.untyped_storage()._cdata


def _memory_pass(model: nn.Module, units, images: torch.Tensor, optimizer: str):
    """One forward of the chain under a saved-tensor hook; returns per-unit memory and each unit's input."""
    owned = {_storage_key(t) for t in list(model.parameters()) + list(model.buffers())}
    seen: set[int] = set(owned)
    kept: list[torch.Tensor] = []  # holds every saved tensor so no storage address is reused mid-pass
    saved = [0] * len(units)
    current = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        key = _storage_key(tensor)
        if key not in seen:
            seen.add(key)
            saved[current] += tensor.untyped_storage().nbytes()
        kept.append(tensor)
        return tensor

    calls = [0] * len(units)  # the paper's count of layer inputs and outputs, per unit

    def count_call(module: nn.Module, args, output) -> None:
        tensors = [t for t in args if torch.is_tensor(t)] + ([output] if torch.is_tensor(output) else [])
        calls[current] += sum(t.numel() * t.element_size() for t in tensors)

    hooks = [
        leaf.register_forward_hook(count_call)
        for _, unit in units
        for leaf in unit.modules()
        if not list(leaf.children())
    ]
    inputs, memory = [], []
    x = images
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        for current, (name, unit) in enumerate(units):  # noqa: B007  (pack and count_call read `current`)
            inputs.append(x.detach())
            out = unit(x)  # (2B, ...) for every unit but the head, whose output is the scalar loss
            params = list(unit.parameters())
            buffers = list(unit.buffers())
            memory.append(
                UnitMemory(
                    name=name,
                    kind=_kind(unit),
                    shape=tuple(out.shape),
                    input_numel=x.numel(),
                    param_bytes=_nbytes(params) + _nbytes(buffers),
                    grad_bytes=_nbytes([p for p in params if p.requires_grad]),
                    optimizer_bytes=0,
                    activation_bytes=0,
                    output_bytes=out.numel() * out.element_size(),
                )
            )
            x = out
    for hook in hooks:
        hook.remove()
    memory = [
        replace(entry, activation_bytes=saved[index], optimizer_bytes=_optimizer_bytes(list(unit.parameters()), optimizer))
        for index, (entry, (_, unit)) in enumerate(zip(memory, units))
    ]
    memory = [
        replace(entry, paper_bytes=calls[index] + entry.param_bytes + entry.grad_bytes + entry.optimizer_bytes)
        for index, entry in enumerate(memory)
    ]
    return memory, inputs


def _nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _optimizer_bytes(params: list[nn.Parameter], name: str) -> int:
    """State bytes a real optimizer allocates for ``params`` in one step (``lr = 0``, copies, so weights stay)."""
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        return 0
    copies = [nn.Parameter(p.detach().clone()) for p in trainable]
    for copy in copies:
        copy.grad = torch.zeros_like(copy)
    if name == "adam":
        optimizer: torch.optim.Optimizer = torch.optim.Adam(copies, lr=0.0)
    else:
        optimizer = torch.optim.SGD(copies, lr=0.0, momentum=0.9 if name == "sgd" else 0.0)
    optimizer.step()
    storages = {}
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                storages[_storage_key(value)] = value.untyped_storage().nbytes()
    return sum(storages.values())


def _time_unit(unit: nn.Module, x: torch.Tensor, input_grad: bool, config: ProfilerConfig, device: torch.device):
    """Median forward and backward milliseconds of ``unit`` on clones of ``x``."""
    params = list(unit.parameters())
    forward, backward = [], []
    for run in range(config.warmup + config.repeats):
        for p in params:
            p.grad = None  # as zero_grad(set_to_none=True): backward allocates the gradients, as in training
        inp = x.clone().requires_grad_(input_grad)
        out, forward_ms = _timed(functools.partial(unit, inp), device, config.clock)
        if out.requires_grad:
            grad = None if out.dim() == 0 else torch.ones_like(out)
            _, backward_ms = _timed(functools.partial(torch.autograd.backward, out, grad), device, config.clock)
        else:
            backward_ms = 0.0  # nothing upstream to differentiate (a weightless first unit)
        if run >= config.warmup:
            forward.append(forward_ms)
            backward.append(backward_ms)
    return statistics.median(forward), statistics.median(backward)


def _timed(fn: Callable[[], object], device: torch.device, clock: str):
    """(result, milliseconds) of ``fn``; on CUDA timed by events on the current stream."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = fn()
        end.record()
        end.synchronize()
        return result, start.elapsed_time(end)
    now = time.process_time if clock == "process" else time.perf_counter
    start_s = now()
    result = fn()
    return result, (now() - start_s) * 1000.0


_KINDS = (
    (nn.Conv2d, "conv"), (nn.modules.batchnorm._BatchNorm, "bn"), (nn.ReLU, "relu"),
    (nn.MaxPool2d, "pool"), (nn.AdaptiveAvgPool2d, "pool"), (nn.Flatten, "flatten"), (nn.Linear, "linear"),
)


def _kind(unit: nn.Module) -> str:
    for cls, kind in _KINDS:
        if isinstance(unit, cls):
            return kind
    return "head" if hasattr(unit, "loss") else "block"


def _settings(config: ProfilerConfig, device: torch.device) -> ProfileSettings:
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} ({device})"
    else:
        name = f"cpu ({platform.machine()}, {torch.get_num_threads()} threads, {config.clock} clock)"
    return ProfileSettings(
        model="lite-srl" if config.model.variant == "litesrl" else config.model.variant,
        backbone=config.model.backbone,
        batch_size=config.batch_size,
        image_size=config.image_size,
        channels=config.model.in_channels,
        optimizer=config.optimizer,
        dtype=config.dtype,
        device=name,
        torch_version=torch.__version__,
        host=socket.gethostname(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        repeats=config.repeats,
    )
