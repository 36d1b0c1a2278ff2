"""Shared pieces of the coordinator tests: the model, run settings, a plain single-process reference loop."""

from __future__ import annotations

from pathlib import Path

import torch

from assets import asset_path
from engine.cwb.profile_format import load_profile
from engine.cwb.transfer import Network
from engine.dhp.batches import DataSettings, StageOneData
from engine.dhp.coordinator import Coordinator
from engine.dhp.events import EventLog, read_events
from engine.dhp.plan import plan_run
from engine.dhp.settings import RunSettings
from engine.model import ModelConfig, build_model
from engine.optim import OptimConfig
from tests.nodes.agent_procs import addresses, links

MODEL = ModelConfig()
PROFILE = load_profile(asset_path("profiles/tx2-resnet18.json"))
NETWORK = Network(bandwidth=125e6)


def settings(iterations: int, out: Path | None, **changes) -> RunSettings:
    """Batch 4 of 32 px views from the 20-image test set (5 batches per epoch)."""
    base = dict(
        model=MODEL,
        optim=OptimConfig(batch_size=4, total_steps=iterations, warmup_steps=2),
        data=DataSettings(path=None, load_size=32, view_size=32, batch_size=4, seed=3),
        emulate=False, out_dir=out, request_timeout=60.0,
    )
    return RunSettings(**{**base, **changes})


async def coordinator_for(agents, run: RunSettings, events: Path, **kwargs) -> Coordinator:
    coordinator = Coordinator(await links(agents), addresses(agents), run, events=EventLog(events), **kwargs)
    await coordinator.attach()
    return coordinator


def plan_for(coordinator: Coordinator, mode: str, partitions: int = 3, cuts=None):
    return plan_run(PROFILE, coordinator.pool(), NETWORK, mode=mode, partitions=partitions, cuts=cuts)


def reference_training(run: RunSettings, data: Path, steps: int, reset_momentum_at: int | None = None) -> dict:
    """Single-process training of the whole model on the same batches with the same OptimConfig."""
    torch.manual_seed(run.seed)
    model = build_model(run.model)
    optim = run.optim

    def optimizer():
        predictor = [p for name, p in model.named_parameters() if name.startswith("head.")]
        rest = [p for name, p in model.named_parameters() if not name.startswith("head.")]
        return torch.optim.SGD([{"params": rest, "predictor": False}, {"params": predictor, "predictor": True}],
                               lr=0.0, momentum=optim.momentum, weight_decay=optim.weight_decay)

    sgd = optimizer()
    batches = StageOneData(run.data, data)
    model.train()
    for step in range(steps):
        if step == reset_momentum_at:
            sgd = optimizer()
        for group in sgd.param_groups:
            group["lr"] = optim.lr(step, predictor=group["predictor"])
        loss = model(batches.views(step)).loss
        sgd.zero_grad(set_to_none=True)
        loss.backward()
        sgd.step()
    return model.state_dict()


def iteration_batches(path: Path) -> list[int]:
    return [event.batch for event in read_events(path) if event.TYPE == "iteration"]
