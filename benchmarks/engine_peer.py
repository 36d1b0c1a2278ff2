"""A peer for the DHP engine: litesrl chains vs ``torch.distributed.pipelining`` (GPipe over gloo), same cut, real compute.

One command: ``.venv/bin/python benchmarks/engine_peer.py``. Lite-SRL/ResNet-18 is cut at the same two
points (``--cut-after``, CWB's three TX2 partitions) into three processes on this machine, each with one
torch thread, and trains one mini-batch after another on the same two-view batches (the stage-1 process
builds them with ``engine.dhp.batches.StageOneData`` from the same folder):

1. a litesrl fixed chain of three node agents (``litesrl train --mode fixed --cut-after ...``, real compute,
   no time stretching) vs ``ScheduleGPipe`` with 1 micro-batch on three gloo ranks;
2. ``ScheduleGPipe`` with 4 micro-batches (three ranks) vs litesrl's two fixed chains on six agents.

Both sides run SGD on every stage after each mini-batch; the figure is wall ms per mini-batch over the
iterations after ``--warmup``. "compute only" is the same step of the whole model in one process, one thread:
what is left above it is each engine's cost of cutting the model (transfers, scheduling, waiting).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import tempfile
import time
from pathlib import Path

from report import write_section

import torch  # noqa: E402  (after report, which puts the repository on sys.path)
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402

from console.cluster import local  # noqa: E402
from console.cluster.training import TrainJob, run_training  # noqa: E402
from engine.dhp.batches import DataSettings, StageOneData  # noqa: E402
from engine.dhp.events import read_events  # noqa: E402
from engine.dhp.stage import split_model, stage_module  # noqa: E402
from engine.model import ModelConfig, build_model  # noqa: E402
from engine.optim import OptimConfig, build_optimizer, set_learning_rates  # noqa: E402

TITLE = "Engine peer: litesrl chains vs torch.distributed.pipelining (GPipe, gloo)"


class _LossAsVector(nn.Module):
    """The last stage returns a scalar loss; GPipe merges micro-batch outputs along dim 0, so give it one."""

    def __init__(self, stage: nn.Module) -> None:
        super().__init__()
        self.stage = stage

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x).reshape(1)


def pairs_per_microbatch(views: torch.Tensor, microbatches: int) -> torch.Tensor:
    """Reorder (2B, ...) rows [a; b] so that each of ``microbatches`` equal chunks is [a_m; b_m]: the loss pairs
    view a of an image with its view b, which must therefore travel in the same micro-batch."""
    a, b = views.chunk(2)
    return torch.cat([torch.cat([x, y]) for x, y in zip(a.chunk(microbatches), b.chunk(microbatches))])


def _gpipe_rank(rank: int, args: argparse.Namespace, port: int, microbatches: int, results) -> None:
    from torch.distributed.pipelining import PipelineStage, ScheduleGPipe

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=3)
    try:
        torch.manual_seed(args.seed)
        model = build_model(ModelConfig())
        names = [name for name, _ in model.partitionable_layers()]
        cuts = [names.index(name) + 1 for name in args.cut_after.split(",")]
        module = stage_module(model, split_model(model, cuts)[rank])
        optim = OptimConfig(batch_size=args.batch_size, total_steps=args.iterations)
        optimizer = build_optimizer(module, optim)
        stage = PipelineStage(_LossAsVector(module) if rank == 2 else module, rank, 3, torch.device("cpu"))
        schedule = ScheduleGPipe(stage, microbatches, loss_fn=lambda out, _target: out.sum())
        data = StageOneData(_data_settings(args), args.data) if rank == 0 else None
        began = 0.0
        for step in range(args.iterations):
            if step == args.warmup:
                dist.barrier()
                began = time.perf_counter()
            set_learning_rates(optimizer, optim, step)
            if rank == 0:
                schedule.step(pairs_per_microbatch(data.views(step), microbatches))
            elif rank == 2:
                schedule.step(target=torch.zeros(microbatches))
            else:
                schedule.step()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        dist.barrier()
        if rank == 0:
            results.put((time.perf_counter() - began) * 1000 / (args.iterations - args.warmup))
    finally:
        dist.destroy_process_group()


def gpipe_ms(args: argparse.Namespace, microbatches: int) -> float:
    """Wall ms per mini-batch of ScheduleGPipe over three gloo ranks (processes)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    mp.start_processes(_gpipe_rank, args=(args, port, microbatches, results), nprocs=3, join=True, start_method="spawn")
    return results.get()


def _data_settings(args: argparse.Namespace) -> DataSettings:
    return DataSettings(path=None, load_size=args.load_size, view_size=args.image_size, batch_size=args.batch_size,
                        seed=args.seed)


def litesrl_ms(args: argparse.Namespace, nodes: int, out: Path) -> tuple[float, list[int]]:
    """Wall ms per mini-batch of litesrl fixed chains on ``nodes`` local agents (three per chain)."""
    # A timing comparison of the two engines at a fixed cut, not a memory study: the exact count lets the
    # paper's TX2 budget hold the cut (the paper's own count would put stage 1 at 5.1 GB).
    local.up(nodes, profile="tx2", data=args.data, memory_per_node="3GB", memory_accounting="exact")
    try:
        job = TrainJob(cluster="local", mode="fixed", iterations=args.iterations, average_every=0, partitions=3,
                       cut_after=tuple(args.cut_after.split(",")), batch_size=args.batch_size, image_size=args.image_size,
                       load_size=args.load_size, seed=args.seed, out=out)
        outcome = asyncio.run(run_training(job))
    finally:
        local.down()
    if outcome.result.reason:
        raise SystemExit(f"error: the litesrl run stopped: {outcome.result.reason}")
    times = sorted(e.t for e in read_events(outcome.events) if e.TYPE == "iteration")
    return (times[-1] - times[args.warmup - 1]) * 1000 / (len(times) - args.warmup), [len(s) for s in outcome.plan.stages]


def compute_ms(args: argparse.Namespace) -> float:
    """The same training step of the whole model in one process, one thread."""
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    model = build_model(ModelConfig()).train()
    optim = OptimConfig(batch_size=args.batch_size, total_steps=args.iterations)
    optimizer = build_optimizer(model, optim)
    data = StageOneData(_data_settings(args), args.data)
    began = 0.0
    for step in range(args.iterations):
        if step == args.warmup:
            began = time.perf_counter()
        set_learning_rates(optimizer, optim, step)
        loss = model(data.views(step)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - began) * 1000 / (args.iterations - args.warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40, help="Mini-batches per run.")
    parser.add_argument("--warmup", type=int, default=5, help="First mini-batches left out of the timing.")
    parser.add_argument("--batch-size", type=int, default=8, help="Images per mini-batch (divisible by 4).")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--load-size", type=int, default=48)
    parser.add_argument("--cut-after", default="layer1_1,layer2_1", help="The two cut points (CWB's TX2 choice).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print the table without touching BENCHMARKS.md.")
    args = parser.parse_args()
    if args.batch_size % 4 or not 0 < args.warmup < args.iterations:
        raise SystemExit("error: --batch-size must be divisible by 4 and --warmup lie below --iterations")
    load = os.getloadavg()
    home = Path(tempfile.mkdtemp(prefix="litesrl-engine-peer-"))  # its own cluster: one you run is left alone
    os.environ["XDG_STATE_HOME"], os.environ["XDG_CONFIG_HOME"] = str(home / "state"), str(home / "config")
    args.data = local.ensure_demo_data(home / "data")
    rows = {"compute only (whole model, one process)": compute_ms(args)}
    print(f"compute only: {rows['compute only (whole model, one process)']:.1f} ms", flush=True)
    rows["torch GPipe, 3 ranks, 1 micro-batch"] = gpipe_ms(args, 1)
    ours, stages3 = litesrl_ms(args, 3, home / "chain3")
    rows[f"litesrl fixed chain, {'/'.join(map(str, stages3))} nodes"] = ours
    rows["torch GPipe, 3 ranks, 4 micro-batches"] = gpipe_ms(args, 4)
    ours, stages = litesrl_ms(args, 6, home / "chain6")
    rows[f"litesrl two fixed chains, {'/'.join(map(str, stages))} nodes"] = ours
    compute = rows["compute only (whole model, one process)"]
    lines = [f"- load average before the run: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min; shared machine)",
             f"- ResNet-18 Lite-SRL cut after {args.cut_after}; batch {args.batch_size} of {args.image_size} px views "
             f"({2 * args.batch_size} rows); {args.iterations} mini-batches, the first {args.warmup} not timed; one torch "
             "thread per process; SGD on every stage after each mini-batch", "",
             "| engine | ms per mini-batch | above compute only |", "|---|---:|---:|"]
    for name, ms in rows.items():
        lines.append(f"| {name} | {ms:.1f} | {ms - compute:+.1f} |")
    lines += ["", "On a loaded machine three processes get more CPU time than one, so 'compute only' is no floor there; "
              "compare the engines with each other."]
    chain, gpipe = rows[f"litesrl fixed chain, {'/'.join(map(str, stages3))} nodes"], rows["torch GPipe, 3 ranks, 1 micro-batch"]
    verdict = "met" if chain <= gpipe else "NOT met"
    lines += ["", f"Target (our per-mini-batch overhead no higher than torch's at 1 micro-batch): {verdict}: the litesrl "
              f"chain takes {chain:.1f} ms per mini-batch, GPipe's three ranks {gpipe:.1f} ms "
              f"({100 * (chain / gpipe - 1):+.1f} %)."]
    body = "\n".join(lines) + "\n"
    print(body)
    if not args.no_write:
        write_section(TITLE, "engine_peer.py", body)


if __name__ == "__main__":
    main()
