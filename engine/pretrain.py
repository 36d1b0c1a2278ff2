"""Self-supervised pretraining of Lite-SRL on one machine (Algorithm 1): resumable, budgeted, logged."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from engine.augment import AugmentConfig, build_view_transform
from engine.augment.pipelines import channel_stats
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.data.folder import ImageSet
from engine.data.images import Modality
from engine.device import resolve_device
from engine.distributed import DistContext, broadcast_int, data_parallel, shard
from engine.errors import CheckpointError, ConfigError
from engine.io import atomic_write_text, read_jsonl
from engine.loss import collapse_indicator
from engine.lr_schedule import BudgetPlanner
from engine.model import LiteSRL, ModelConfig, build_model
from engine.optim import OptimConfig, build_optimizer, set_learning_rates
from engine.precision import MixedPrecision
from engine.views import TwoViewBatches, view_loader

log = logging.getLogger(__name__)
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


@dataclass(frozen=True)
class PretrainConfig:
    """A pretraining run. Everything that shapes the trajectory is here and stored in the checkpoint."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone, head variant, channels and stem."""
    modality: Modality = "optical"
    """``optical`` or ``sar``: picks the augmentation pipeline (paper 4.2)."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """View size and augmentation strengths."""
    batch_size: int = 64
    """Images per mini-batch (each gives two views, so the encoder sees 2x this)."""
    steps: int = 1000
    """Total optimiser steps; the cosine schedule spans them."""
    base_lr: float = 0.05
    """Base learning rate; the peak is base_lr x batch_size / 256 (``engine.lr_schedule.scaled_lr``)."""
    momentum: float = 0.9
    """SGD momentum (paper 4.3)."""
    weight_decay: float = 1e-4
    """SGD weight decay (paper 4.3)."""
    warmup_steps: int = 10
    """Linear warm-up steps before the cosine decay; keeps early BN statistics from blowing up."""
    fix_predictor_lr: bool = True
    """Keep the predictor at the peak rate instead of decaying it (SimSiam's finding: it must keep
    adapting to the encoder)."""
    seed: int = 0
    """Seeds model initialisation, image order and every augmentation."""

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ConfigError(f"batch size must be >= 2 (BatchNorm needs more than one sample), got {self.batch_size}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.base_lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.base_lr}")
        expected = 1 if self.modality == "sar" else 3
        if self.model.in_channels != expected:
            raise ConfigError(f"{self.modality} data has {expected} channel(s) but the model takes {self.model.in_channels}")

    @property
    def optim(self) -> OptimConfig:
        """The optimiser and learning-rate schedule of this run (what a DHP stage runs too)."""
        return OptimConfig(base_lr=self.base_lr, batch_size=self.batch_size, momentum=self.momentum,
                           weight_decay=self.weight_decay, total_steps=self.steps, warmup_steps=self.warmup_steps,
                           fix_predictor_lr=self.fix_predictor_lr)

    @classmethod
    def with_optim(cls, optim: OptimConfig, **rest) -> PretrainConfig:
        """The config whose ``optim`` is ``optim``; ``rest`` gives the other fields."""
        return cls(batch_size=optim.batch_size, steps=optim.total_steps, base_lr=optim.base_lr, momentum=optim.momentum,
                   weight_decay=optim.weight_decay, warmup_steps=optim.warmup_steps,
                   fix_predictor_lr=optim.fix_predictor_lr, **rest)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PretrainConfig:
        data = dict(data)
        data["model"] = ModelConfig.from_dict(data["model"])
        augment = dict(data["augment"])
        augment["crop_scale"] = tuple(augment["crop_scale"])
        data["augment"] = AugmentConfig(**augment)
        return cls(**data)


@dataclass(frozen=True)
class StepMetrics:
    """What one optimiser step reports (also one line of ``metrics.jsonl``)."""

    step: int
    epoch: float
    loss: float
    lr: float
    collapse_std: float
    step_seconds: float
    images_per_second: float
    elapsed_seconds: float


@dataclass(frozen=True)
class RunOptions:
    """How a run executes; none of it changes the trajectory."""

    out_dir: Path
    device: str = "auto"
    workers: int = 1
    """Background processes that augment the next batches while the model trains."""
    checkpoint_every: int = 100
    channels_last: bool = True
    """NHWC memory layout: 10-15 % faster convolutions on x86 CPUs, and the layout cuDNN prefers."""
    time_budget: float | None = None
    """Wall-clock seconds; if set, ``steps`` is re-planned after the first steps so that the run,
    including its full cosine decay, ends within the budget."""
    precision: str = "fp32"
    """``fp32``, ``bf16`` (autocast; CPUs and GPUs) or ``fp16`` (autocast + gradient scaler; GPUs)."""
    dist: DistContext | None = None
    """Set under torchrun: this process trains its share of every batch with DistributedDataParallel."""
    sync_bn: bool = False
    """Under torchrun, normalise with the global batch's BatchNorm statistics (``GlobalBatchNorm``)."""


def normalisation(images: ImageSet) -> tuple[torch.Tensor, torch.Tensor]:
    return channel_stats(images.images)


class Pretrainer:
    """Runs (or resumes) one pretraining run and writes checkpoint and metrics into ``out_dir``."""

    def __init__(self, config: PretrainConfig, images: ImageSet, options: RunOptions) -> None:
        if len(images) < config.batch_size:
            raise ConfigError(f"{len(images)} images cannot fill one batch of {config.batch_size}; lower --batch-size")
        if images.images.shape[1] != config.model.in_channels:
            raise ConfigError(f"images have {images.images.shape[1]} channel(s), the model takes {config.model.in_channels}")
        self.config = config
        self.images = images
        self.options = options
        self.device = resolve_device(options.device)
        torch.manual_seed(config.seed)
        self.model: LiteSRL = self.build_model().to(self.device)
        if options.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.network: torch.nn.Module = self.model
        """What a step runs: the model, or its DistributedDataParallel wrapper under torchrun."""
        if options.dist:
            self.network = data_parallel(self.model, options.dist, self.device, config.batch_size, options.sync_bn)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.precision = MixedPrecision(options.precision, self.device)
        self.mean, self.std = normalisation(images)
        self.step = 0
        self.elapsed = 0.0
        self._budget = BudgetPlanner(options.time_budget, config.warmup_steps) if options.time_budget is not None else None

    kind = "pretrain"
    """The checkpoint's ``kind``; subclasses that train other models (engine.baselines) name theirs."""

    def build_model(self) -> LiteSRL:
        """The model this run trains: Lite-SRL or the SimSiam configuration, per ``config.model``."""
        return build_model(self.config.model)

    def after_step(self) -> None:
        """Called after every optimiser step; momentum-encoder methods update their targets here."""

    @property
    def checkpoint_path(self) -> Path:
        return self.options.out_dir / CHECKPOINT_NAME

    def resume(self) -> None:
        """Continue from ``out_dir/checkpoint.pt``: same weights, optimiser state, step and schedule."""
        data = load_checkpoint(self.checkpoint_path, map_location=self.device)
        stored = PretrainConfig.from_dict(data["pretrain_config"])
        if replace(stored, steps=self.config.steps) != self.config:
            raise CheckpointError(f"{self.checkpoint_path} was written with other "
                                  "settings; resume with the same flags or use a new --out")
        self.config = stored if self.options.time_budget else replace(stored, steps=self.config.steps)
        self.model.load_state_dict(data["model"])
        self.optimizer.load_state_dict(data["optimizer"])
        self.mean, self.std = data["normalisation"]["mean"], data["normalisation"]["std"]
        self.step = int(data["step"])
        self.elapsed = float(data.get("elapsed_seconds", 0.0))
        self.precision.load_state_dict(data.get("grad_scaler", {}))
        _truncate_metrics(self.options.out_dir / METRICS_NAME, self.step)

    def save(self) -> Path:
        if self.options.dist and not self.options.dist.is_main:
            return self.checkpoint_path
        return save_checkpoint(self.checkpoint_path, {
            "kind": self.kind,
            "model_config": self.config.model.to_dict(),
            "pretrain_config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "normalisation": {"mean": self.mean, "std": self.std},
            "step": self.step,
            "elapsed_seconds": self.elapsed,
            "grad_scaler": self.precision.state_dict(),
        })

    def run(self, on_step: Callable[[StepMetrics, int], None] | None = None) -> list[StepMetrics]:
        """Train until ``config.steps``; ``on_step(metrics, total_steps)`` is called after every step."""
        options = self.options
        main = options.dist is None or options.dist.is_main
        options.out_dir.mkdir(parents=True, exist_ok=True)
        if main:
            (options.out_dir / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        transform = build_view_transform(self.config.modality, self.config.augment, self.mean, self.std)
        # Under a time budget the step count is re-planned while the loader runs, so the loader is
        # given no end of its own; the loop stops at ``config.steps``.
        last = self.config.steps if self.options.time_budget is None else 2**62
        batches = TwoViewBatches(self.images.images, transform, self.config.batch_size, self.config.seed, self.step, last)
        history: list[StepMetrics] = []
        self.model.train()
        per_epoch = len(self.images) // self.config.batch_size
        started = time.perf_counter() - self.elapsed
        # A fresh run starts a fresh log (a run stopped before its first checkpoint leaves lines behind); a resumed
        # one continues the log that resume() cut at its checkpoint.
        mode = "a" if self.step else "w"
        with open(options.out_dir / METRICS_NAME if main else os.devnull, mode, encoding="utf-8") as metrics_file:
            try:
                for views in view_loader(batches, options.workers):
                    if self.step >= self.config.steps:
                        break
                    tick = time.perf_counter()
                    loss, collapse, lr = self._train_step(views)
                    now = time.perf_counter()
                    self.step += 1
                    self.elapsed = now - started
                    metrics = StepMetrics(
                        step=self.step, epoch=self.step / per_epoch, loss=loss, lr=lr, collapse_std=collapse,
                        step_seconds=now - tick, images_per_second=self.config.batch_size / max(now - tick, 1e-9),
                        elapsed_seconds=self.elapsed,
                    )
                    history.append(metrics)
                    metrics_file.write(json.dumps(asdict(metrics)) + "\n")
                    if not math.isfinite(loss):
                        self.save()
                        raise ConfigError(f"loss became {loss} at step {self.step}; lower the learning rate")
                    self._replan_for_budget()
                    if self.step % options.checkpoint_every == 0:
                        metrics_file.flush()
                        self.save()
                    if on_step:
                        on_step(metrics, self.config.steps)
            except KeyboardInterrupt:
                log.warning("interrupted at step %d; saving a checkpoint to resume from", self.step)
                self.save()
                raise
        self.save()
        return history

    def _train_step(self, views: torch.Tensor) -> tuple[float, float, float]:
        views = views.to(self.device, non_blocking=True)
        if self.options.dist:
            views = shard(views, self.options.dist)
        if self.options.channels_last:
            views = views.contiguous(memory_format=torch.channels_last)
        lr = set_learning_rates(self.optimizer, self.config.optim, self.step)
        with self.precision.autocast():
            out = self.network(views)  # sequential form: both views in one (2B, C, S, S) batch
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward_step(out.loss, self.optimizer)
        self.after_step()
        return out.loss.item(), collapse_indicator(out.e), lr

    def _replan_for_budget(self) -> None:
        """Fit the total step count to the budget so the cosine schedule ends when the budget does."""
        if self._budget is None:
            return
        total = self._budget.replan(self.step, self.elapsed, self.config.steps)
        if total is not None:
            if self.options.dist:
                total = broadcast_int(total)  # every rank must stop at the same step
            log.info("time budget %.0f s after %d steps in %.0f s: planning %d steps",
                     self._budget.budget_s, self.step, self.elapsed, total)
            self.config = replace(self.config, steps=total)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines written after the checkpoint's step, so a resumed log has no duplicates."""
    if not path.exists():
        return
    try:
        kept = [record for record in read_jsonl(path) if record["step"] <= step]
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"cannot resume: {path} is damaged ({exc})") from None
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
