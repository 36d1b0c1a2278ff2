"""Data-parallel pretraining under torchrun: the process group, each rank's share of a batch, BatchNorm over all ranks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel

from engine.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int
    """Index on this machine; picks the GPU (``cuda:local_rank``)."""

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, metrics and the console output."""
        return self.rank == 0


def init_from_environment(device: str) -> tuple[DistContext | None, str]:
    """Under torchrun (``WORLD_SIZE`` > 1) join the process group, NCCL when training on CUDA and gloo
    otherwise, and return the context and this rank's device; outside torchrun ``(None, device)``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None, device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    on_gpu = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo")
    return DistContext(rank, world, local), device


def data_parallel(model: nn.Module, context: DistContext, device: torch.device, batch_size: int, sync_bn: bool) -> nn.Module:
    """``model`` wrapped for DistributedDataParallel (gradients averaged over ranks after each backward);
    with ``sync_bn`` its BatchNorm layers first become ``GlobalBatchNorm`` (statistics of the global batch)."""
    if batch_size % context.world_size:
        raise ConfigError(f"batch size {batch_size} does not split evenly over {context.world_size} processes")
    if sync_bn:
        convert_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(views: torch.Tensor, context: DistContext) -> torch.Tensor:
    """This rank's rows of a (2B, C, S, S) two-view batch: the same images' view a and view b, (2B/W, C, S, S).

    Every rank builds the same global batch (views depend only on seed and step) and keeps its
    slice, so W processes on B/W images each train on exactly the batch one process would.
    """
    view_a, view_b = views.chunk(2)
    share = view_a.shape[0] // context.world_size
    rows = slice(context.rank * share, (context.rank + 1) * share)
    return torch.cat([view_a[rows], view_b[rows]])


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (decisions such as a re-planned step count must agree)."""
    tensor = torch.tensor([value], dtype=torch.long)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics cover the whole global batch, over any backend.

    SimSiam-style losses are sensitive to per-device BN (each shard normalised alone sees a
    different, smaller batch). ``torch.nn.SyncBatchNorm`` does this on GPUs only; this layer sums
    per-channel count, sum and sum of squares over ranks with a differentiable all-reduce, so it
    runs over gloo on CPUs as well as NCCL, and its gradient is that of the global batch. Outside
    a process group, or in eval mode, it is a plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        x = input.float()  # statistics in fp32 also under autocast, as BatchNorm computes them
        channels = x.shape[1]
        dims = [0] + list(range(2, x.dim()))
        count = x.new_tensor([x.numel() / channels])
        total = all_reduce(torch.cat([x.sum(dims), (x * x).sum(dims), count]))  # sum over ranks, differentiable
        n = total[-1]
        mean = total[:channels] / n
        var = (total[channels : 2 * channels] / n - mean * mean).clamp_min(0.0)
        assert self.running_mean is not None and self.running_var is not None and self.num_batches_tracked is not None
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(var.detach() * n / (n - 1), momentum)  # unbiased, as BatchNorm keeps it
        shape = [1, channels] + [1] * (x.dim() - 2)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d/2d/3d below ``module`` by a ``GlobalBatchNorm`` holding the same
    parameters and running statistics (state-dict keys unchanged, so checkpoints stay compatible)."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            replacement = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement.to(next(child.buffers()).device))
        else:
            convert_batchnorm(child)
    return module
