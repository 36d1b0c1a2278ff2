"""One headless training run on a cluster: open it, plan with CWB, run the coordinator, close it.

``litesrl train`` and ``benchmarks/dhp_tables.py`` both call :func:`run_training`; they only differ in
how they show the plan, the live events and the result.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from console.cluster.profiles import resolve_profile
from console.cluster.session import ClusterSession, open_inventory, open_local
from console.errors import ConsoleError
from engine.dhp.defaults import AVERAGE_EVERY, AVERAGE_WEIGHTING

EMULATED_BATCH = 4
"""Mini-batch of the small real workload emulated boards run (the profile sets the times)."""
EMULATED_VIEW = 32
"""View size of that workload, pixels."""


@dataclass(frozen=True)
class TrainJob:
    """What ``litesrl train`` was asked; None means "the cluster's or the profile's default"."""

    cluster: str = "local"
    """``local`` (the emulated cluster) or an inventory TOML path."""
    mode: str = "dynamic"
    policy: str = "first_free"
    overlap: bool = True
    """Overlap communication with computation (``engine.dhp.settings.RunSettings.overlap``)."""
    iterations: int = 1000
    average_every: int = AVERAGE_EVERY
    average_weighting: str = AVERAGE_WEIGHTING
    """One of ``engine.dhp.defaults.WEIGHTINGS``."""
    data: Path | None = None
    """Dataset folder on the nodes (default: each agent's own ``--data`` or the inventory's data_path)."""
    profile: str | None = None
    """Board name or profile file (default: the emulated cluster's board)."""
    backbone: str = "resnet18"
    partitions: int | None = None
    """Stages (default: the fewest that fit the nodes' memory)."""
    cut_after: tuple[str, ...] = ()
    """Layers to cut after instead of CWB's best-E choice (e.g. the fastest candidate `partition` lists)."""
    batch_size: int | None = None
    image_size: int | None = None
    load_size: int | None = None
    """Side images are decoded to on the stage-1 nodes (default 1.5x the view, as ``litesrl pretrain``)."""
    crop_scale: float = 0.2
    """Smallest area fraction of the random resized crop."""
    rotation: str = "rot90"
    """``rot90`` or ``any`` (the augmentation's rotation, as ``litesrl pretrain --rotation``)."""
    sar_radiometry: str = "mild"
    """SAR views: ``mild`` or ``strong`` (as ``litesrl pretrain --sar-radiometry``)."""
    lr: float = 0.05
    warmup_steps: int = 10
    """Linear warm-up iterations of the learning-rate schedule."""
    budget: float | None = None
    """Wall-clock seconds: the iteration count is re-planned so that the cosine schedule ends in time."""
    emulate_time: bool = False
    """Stretch every step to the profiled board's time (timing studies); by default nodes compute at full speed."""
    seed: int = 0
    out: Path = Path("runs/train")
    events: Path | None = None
    resume: bool = False
    checkpoint_every: int = 0
    chain_timeout: float = 120.0
    """Seconds a chain may go unheard of before it is given up and its batch requeued (0: never)."""
    bandwidth: str = "1Gbit"
    """Link rate the plan assumes for an inventory cluster (the emulated cluster knows its own)."""
    memory_accounting: str | None = None
    """``exact`` or ``paper`` (default: the emulated cluster's, else exact)."""
    replicas: tuple[int, ...] = ()
    """Nodes per stage for dynamic chains instead of the analytic best (e.g. the plan `partition` recommends)."""
    latency: str = "0ms"


@dataclass(frozen=True)
class TrainOutcome:
    """A finished (or stopped) run with what it was planned against."""

    plan: object
    """``engine.dhp.plan.RunPlan``."""
    result: object
    """``engine.dhp.coordinator.RunResult``."""
    time_scale: float | None
    """Emulated time scale (None on real boards and without time emulation): measured ms / time_scale = board ms."""
    description: str
    events: Path


async def run_training(job: TrainJob, *, on_plan: Callable | None = None, on_event: Callable | None = None,
                       on_start: Callable | None = None, on_result: Callable | None = None) -> TrainOutcome:
    """Train ``job``; ``on_plan(plan, session)`` before assigning, ``on_event(event)`` live, ``on_start(coordinator)``,
    and ``on_result(outcome)`` as soon as the run ends, before the links close (a report cannot be lost to a close
    that hangs)."""
    from engine.cwb.profile_format import load_profile
    from engine.cwb.transfer import Network
    from engine.cwb.units import parse_bandwidth, parse_duration_ms
    from engine.dhp.coordinator import Coordinator
    from engine.dhp.events import EventLog
    from engine.dhp.plan import check_profile_fits_model, plan_run
    from engine.pretrain import CHECKPOINT_NAME

    checkpoint = job.out / CHECKPOINT_NAME
    if checkpoint.exists() and not job.resume:
        raise ConsoleError(f"{job.out} already holds a run; add --resume to continue it or choose another --out")
    if job.resume and not checkpoint.exists():
        raise ConsoleError(f"nothing to resume: {checkpoint} does not exist")
    if job.cluster == "local":
        session = await open_local()
    else:
        session = await open_inventory(Path(job.cluster), parse_bandwidth(job.bandwidth), parse_duration_ms(job.latency))
    events_path = job.events or job.out / "events.jsonl"
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(session.close)
        profile_name = job.profile or session.profile
        if profile_name is None:
            raise ConsoleError("no profile for these boards: measure one with `litesrl nodes profile NODE`, or give "
                               "--profile (a board name such as tx2, or a profile .json)")
        profile = load_profile(resolve_profile(profile_name, job.backbone))
        settings = _settings(job, profile, session)
        if not settings.emulate and session.time_scale is not None:
            session.time_scale = None  # real compute: measured ms are this host's, not board ms
            session.description += "; real compute, steps not stretched to board times"
        check_profile_fits_model(profile, settings.model)
        job.out.mkdir(parents=True, exist_ok=True)
        events = EventLog(events_path, fresh=not job.resume)
        stack.callback(events.close)
        if on_event is not None:
            events.subscribe(on_event)
        coordinator = Coordinator(session.links, session.addresses, settings, events=events, reconnect=session.reconnect)
        stack.push_async_callback(coordinator.close)
        infos = await coordinator.attach()
        pool = [replace(spec, memory_bytes=planning_budget(spec.memory_bytes, session.budgets.get(spec.name),
                                                           infos.get(spec.name, {})))
                for spec in coordinator.pool()]
        cuts = _stored_cuts(job.out) if job.resume else _named_cuts(profile, job.cut_after)
        plan = plan_run(profile, pool, Network(session.bandwidth, session.latency_ms), mode=job.mode,
                        partitions=job.partitions, cuts=cuts, stage_one=coordinator.data_readers(),
                        accounting=job.memory_accounting or session.memory_accounting or "exact",
                        replicas=job.replicas or None)
        if on_plan is not None:
            on_plan(plan, session)
        if on_start is not None:
            on_start(coordinator)
        result = await coordinator.run(plan, profile, resume=job.resume)
        outcome = TrainOutcome(plan, result, session.time_scale, session.description, events_path)
        if on_result is not None:
            on_result(outcome)
    return outcome


def planning_budget(reported: int, inventory: int | None, info: dict) -> int:
    """The memory CWB may plan on a node: its budget (the inventory's, else what the agent reports) minus
    what a real board's agent already holds (``runtime_bytes``: torch, CUDA context); an emulated
    agent's process is not the board it imitates, so nothing is subtracted there."""
    budget = min(reported, inventory) if inventory is not None else reported
    runtime = 0 if info.get("emulated") else int(info.get("runtime_bytes") or 0)
    return max(budget - runtime, 1)


def _settings(job: TrainJob, profile, session: ClusterSession):
    from engine.dhp.batches import DataSettings
    from engine.dhp.settings import RunSettings
    from engine.model import ModelConfig
    from engine.optim import OptimConfig

    emulated = session.time_scale is not None
    batch = job.batch_size or (EMULATED_BATCH if emulated else profile.settings.batch_size)
    view = job.image_size or (EMULATED_VIEW if emulated else profile.settings.image_size)
    channels = profile.settings.channels
    data = DataSettings(path=str(job.data) if job.data else None, modality="sar" if channels == 1 else "optical",
                        load_size=job.load_size or int(view * 1.5), view_size=view, crop_scale=job.crop_scale,
                        rotation=job.rotation, sar_radiometry=job.sar_radiometry, batch_size=batch, seed=job.seed)
    return RunSettings(
        model=ModelConfig(backbone=profile.settings.backbone, in_channels=channels),
        optim=OptimConfig(base_lr=job.lr, batch_size=batch, total_steps=job.iterations, warmup_steps=job.warmup_steps),
        data=data, mode=job.mode, policy=job.policy, overlap=job.overlap, average_every=job.average_every,
        average_weighting=job.average_weighting, seed=job.seed,
        emulate=job.emulate_time and emulated, time_budget=job.budget,
        data_paths={} if job.data else session.data_paths, out_dir=job.out, checkpoint_every=job.checkpoint_every,
        chain_timeout=job.chain_timeout,
    )


def _named_cuts(profile, names: tuple[str, ...]) -> list[int] | None:
    """Profile cut indices of the layers named in ``names`` (None when there are none: CWB chooses)."""
    if not names:
        return None
    layers = [layer.name for layer in profile.layers]
    unknown = [name for name in names if name not in layers[:-1]]
    if unknown:
        raise ConsoleError(f"cannot cut after {', '.join(unknown)}: the profile's layers are {', '.join(layers[:-1])}")
    cuts = sorted({layers.index(name) for name in names})
    if len(cuts) != len(names):
        raise ConsoleError(f"--cut-after names a layer twice: {', '.join(names)}")
    return cuts


def _stored_cuts(out: Path) -> list[int]:
    """The profile cuts of the checkpoint in ``out`` (its model cuts minus one)."""
    from engine.checkpoint import load_checkpoint
    from engine.pretrain import CHECKPOINT_NAME

    stored = load_checkpoint(out / CHECKPOINT_NAME).get("dhp")
    if not isinstance(stored, dict):
        raise ConsoleError(f"{out / CHECKPOINT_NAME} is not a cluster training checkpoint")
    return [cut - 1 for cut in stored["cuts"]]
