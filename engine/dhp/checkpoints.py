"""Checkpoints of a DHP run: the assembled model in the engine format (``litesrl eval`` reads it) + resume state."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.dhp.settings import RunSettings
from engine.dhp.stage import split_model, stage_module
from engine.errors import CheckpointError
from engine.model import ModelConfig, build_model
from engine.pretrain import CHECKPOINT_NAME, PretrainConfig


def assemble(model: ModelConfig, cuts: Sequence[int], stage_states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The whole model's state dict from one state per stage (``cuts`` are model unit indices)."""
    whole = build_model(model)
    specs = split_model(whole, list(cuts))
    if len(specs) != len(stage_states):
        raise CheckpointError(f"{len(specs)} stages but {len(stage_states)} stage states")
    for spec, state in zip(specs, stage_states):
        stage_module(whole, spec).load_state_dict(state)
    return whole.state_dict()


def stage_states(model: ModelConfig, cuts: Sequence[int], state: dict[str, torch.Tensor] | None,
                 seed: int) -> list[dict[str, torch.Tensor]]:
    """Each stage's initial state: cut from ``state`` (a whole model), or from a model seeded with ``seed``."""
    torch.manual_seed(seed)
    whole = build_model(model)
    if state is not None:
        whole.load_state_dict(state)
    return [{k: v.detach().clone() for k, v in stage_module(whole, spec).state_dict().items()}
            for spec in split_model(whole, list(cuts))]


def save_run(
    out_dir: Path,
    settings: RunSettings,
    cuts: Sequence[int],
    states: Sequence[dict[str, torch.Tensor]],
    normalisation: tuple[torch.Tensor, torch.Tensor],
    step: int,
    elapsed: float,
    plan: dict[str, Any],
    momentum: Sequence[dict[str, torch.Tensor]] = (),
) -> Path:
    """Write ``out_dir/checkpoint.pt`` atomically: the assembled model after ``step`` iterations, and each
    stage's SGD momentum (averaged over its replicas) so that a resumed run continues exactly."""
    pretrain = PretrainConfig.with_optim(settings.optim, model=settings.model, modality=settings.data.modality,
                                         augment=settings.data.augment, seed=settings.seed)
    return save_checkpoint(out_dir / CHECKPOINT_NAME, {
        "kind": "dhp",
        "model_config": settings.model.to_dict(),
        "pretrain_config": pretrain.to_dict(),
        "model": assemble(settings.model, cuts, states),
        "normalisation": {"mean": normalisation[0], "std": normalisation[1]},
        "step": step,
        "elapsed_seconds": elapsed,
        "dhp": {"trajectory": settings.trajectory(), "cuts": list(cuts), "plan": plan, "mode": settings.mode,
                "momentum": [dict(stage) for stage in momentum]},
    })


def stored_momentum(data: dict[str, Any], stages: int) -> list[dict[str, torch.Tensor]]:
    """Each stage's momentum entries (``engine.dhp.stage.MOMENTUM_PREFIX`` keys) from a checkpoint; empty
    dicts for an older checkpoint, which has none."""
    stored = data["dhp"].get("momentum") or [{} for _ in range(stages)]
    if len(stored) != stages:
        raise CheckpointError(f"the checkpoint holds momentum for {len(stored)} stages, the plan has {stages}")
    return [dict(stage) for stage in stored]


def load_run(out_dir: Path, settings: RunSettings) -> dict[str, Any]:
    """The checkpoint in ``out_dir`` to resume ``settings``; CheckpointError if it is not one of this run."""
    path = out_dir / CHECKPOINT_NAME
    data = load_checkpoint(path)
    stored = data.get("dhp")
    if data.get("kind") != "dhp" or not isinstance(stored, dict):
        raise CheckpointError(f"{path} is not a cluster training checkpoint (kind {data.get('kind')!r})")
    if stored.get("trajectory") != settings.trajectory():
        changed = sorted(k for k, v in settings.trajectory().items() if stored["trajectory"].get(k) != v)
        raise CheckpointError(f"{path} was written with other {', '.join(changed)} "
                              "settings; resume with the same flags or use a new --out")
    if settings.time_budget is None and int(data["step"]) > settings.iterations:
        raise CheckpointError(f"{path} is at iteration {data['step']}, past the run's {settings.iterations}")
    return data
