"""`litesrl train`: headless DHP training on the emulated cluster or the inventory's boards (paper 3.3, 6.2).

Shows the CWB plan, live progress (iterations, loss, throughput, chains in flight), and ends with a
table in the shape of the paper's Tables 5-6: each node's average runtime per iteration and its
iteration count, then the total time and the time per iteration.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.table import Table

from console.cli.common import SAR_RADIOMETRY_HELP, console, parse_duration, progress_bar
from console.errors import ConsoleError
from console.fleet.inventory import INVENTORY_ENV
from engine.dhp.defaults import AVERAGE_EVERY, AVERAGE_WEIGHTING


def register(app: typer.Typer) -> None:
    """Add the ``train`` command to the CLI."""
    app.command("train")(train)


def train(
    cluster: Annotated[str | None, typer.Option(help="'local' (the emulated cluster) or an inventory TOML of boards "
                                                        "(default: --inventory, else $LITESRL_INVENTORY, else local).")] = None,
    inventory: Annotated[Path | None, typer.Option("--inventory", "-i", help="Inventory TOML of the boards to train on "
                                                      "(default: $LITESRL_INVENTORY; as `litesrl nodes`).")] = None,
    mode: Annotated[str, typer.Option(help="fixed (chains of Fig. 4a) or dynamic (Fig. 4b).")] = "dynamic",
    policy: Annotated[str, typer.Option(help="Next-hop policy of dynamic chains: "
                                             "first-free (the paper) or earliest-finish.")] = "first-free",
    overlap: Annotated[bool, typer.Option(
        "--overlap/--no-overlap", help="Overlap sends with compute: a node takes its next chain while its gradient "
                                       "travels; stage-1 nodes build their next batch while they wait (paper 3.3.2).")] = True,
    iterations: Annotated[int, typer.Option(min=1, help="Mini-batches to train (the cosine schedule "
                                                        "spans them; with --budget, the first plan).")] = 1000,
    average_every: Annotated[int, typer.Option(min=0, help="Average the replicas every K "
                                                           "iterations (paper 100; 0: at the end).")] = AVERAGE_EVERY,
    average_weighting: Annotated[Literal["equal", "batches", "sum"], typer.Option(
        help="Replica average: sum (apply every replica's update: matches one machine's accuracy with a short "
             "--average-every), equal (the paper's plain mean), or weighted by the mini-batches each replica "
             "trained.")] = AVERAGE_WEIGHTING,
    data: Annotated[Path | None, typer.Option(help="Dataset folder on the nodes (default: each node's own).")] = None,
    profile: Annotated[str | None, typer.Option(help="Board profile (tx2, xavier-nx, orin) or "
                                                     "profile .json (default: the cluster's).")] = None,
    backbone: Annotated[str, typer.Option(help="resnet18, resnet34 or resnet50 (picks the board's profile).")] = "resnet18",
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Stages (default: the fewest that fit the nodes' memory).")] = None,
    cut_after: Annotated[str | None, typer.Option(help="Comma-separated layers to cut after, instead of CWB's best-E "
                                                       "choice (e.g. maxpool,layer2_0; see `litesrl partition`).")] = None,
    batch_size: Annotated[int | None, typer.Option(
        min=2, help="Images per mini-batch (default: the profile's; 4 when emulated).")] = None,
    image_size: Annotated[int | None, typer.Option(min=16, help="View size (default: the profile's; 32 when emulated).")] = None,
    load_size: Annotated[int | None, typer.Option(
        min=16, help="Side images are kept at on stage-1 nodes; crops come from it (default 1.5x image size).")] = None,
    crop_scale: Annotated[float, typer.Option(help="Smallest area fraction of the random resized crop.")] = 0.2,
    rotation: Annotated[Literal["rot90", "any"], typer.Option(
        help="rot90 (exact quarter turns) or any (any angle, then the largest inscribed crop).")] = "rot90",
    sar_radiometry: Annotated[Literal["mild", "strong"], typer.Option(help=SAR_RADIOMETRY_HELP)] = "mild",
    lr: Annotated[float, typer.Option(help="Base learning rate; peak = lr x batch / 256.")] = 0.05,
    warmup_steps: Annotated[int, typer.Option(min=0, help="Linear warm-up iterations.")] = 10,
    budget: Annotated[str | None, typer.Option(help="Wall-clock budget, e.g. 15min: the iteration count "
                                                    "is planned so the cosine schedule ends in time.")] = None,
    emulate_time: Annotated[bool, typer.Option(
        "--emulate-time", help="Stretch every step to the profiled board's time "
                               "(timing studies; default: real compute at full speed).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the initial weights, the batch order and augmentations.")] = 0,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint.pt (loadable "
                                           "by `litesrl eval`), events.jsonl.")] = Path("runs/train"),
    events: Annotated[Path | None, typer.Option(help="JSON-lines event stream (default: OUT/events.jsonl).")] = None,
    checkpoint_every: Annotated[int, typer.Option(
        min=0, help="Also checkpoint every N iterations (at an averaging; 0: at the end).")] = 0,
    chain_timeout: Annotated[float, typer.Option(
        min=0, help="Give up a chain not heard of for this many seconds and train its batch again (0: never).")] = 120.0,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its checkpoint.")] = False,
    bandwidth: Annotated[str, typer.Option(help="Link rate CWB assumes between boards (inventory clusters).")] = "1Gbit",
    latency: Annotated[str, typer.Option(help="Per-message latency CWB assumes (inventory clusters).")] = "0ms",
    replicas: Annotated[str | None, typer.Option(help="Nodes per stage for dynamic chains, e.g. 3/2/1 (default: "
                                                      "the analytic best; `litesrl partition` recommends one).")] = None,
    memory_accounting: Annotated[str | None, typer.Option(
        "--memory-accounting", help="exact or paper (default: the emulated cluster's, else exact).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Train Lite-SRL across the cluster's nodes with CWB partitions and DHP chains."""
    from console.cluster.training import TrainJob, run_training

    if inventory is not None and cluster is not None:
        raise ConsoleError("give --inventory (boards) or --cluster, not both")
    cluster = str(inventory) if inventory is not None else cluster or os.environ.get(INVENTORY_ENV) or "local"
    if not math.isfinite(lr) or lr <= 0:
        raise ConsoleError(f"--lr must be a positive number, got {lr}")
    if not 0.0 < crop_scale <= 1.0:
        raise ConsoleError(f"--crop-scale must be in (0, 1], got {crop_scale}")
    budget_s = parse_duration(budget) if budget else None
    if budget_s is not None and budget_s <= 0:
        raise ConsoleError(f"--budget must be positive, got {budget}")
    cuts = tuple(name.strip() for name in cut_after.split(",") if name.strip()) if cut_after else ()
    if cuts and resume:
        raise ConsoleError("--resume keeps the checkpoint's cuts; drop --cut-after")
    if cuts and partitions is not None and partitions != len(cuts) + 1:
        raise ConsoleError(f"--cut-after makes {len(cuts) + 1} partitions but --partitions says {partitions}")
    if mode not in ("fixed", "dynamic"):
        raise ConsoleError(f"unknown mode {mode!r}; choose one of fixed, dynamic")
    if policy not in ("first-free", "earliest-finish"):
        raise ConsoleError(f"unknown policy {policy!r}; choose one of first-free, earliest-finish")
    counts = _replicas(replicas)
    if counts and mode == "fixed":
        raise ConsoleError("--replicas sets the dynamic chains' stage pools; fixed chains use N // n nodes per stage")
    if memory_accounting is not None:
        from engine.cwb.cost import ACCOUNTINGS, check_choice

        check_choice("memory accounting", memory_accounting, ACCOUNTINGS)
    job = TrainJob(
        cluster=cluster, mode=mode, policy=policy.replace("-", "_"), overlap=overlap, iterations=iterations,
        average_every=average_every, average_weighting=average_weighting,
        data=data, profile=profile, backbone=backbone, partitions=partitions, cut_after=cuts, batch_size=batch_size,
        image_size=image_size, load_size=load_size, crop_scale=crop_scale, rotation=rotation,
        sar_radiometry=sar_radiometry, lr=lr,
        warmup_steps=warmup_steps, budget=budget_s, emulate_time=emulate_time, seed=seed, out=out, events=events, resume=resume,
        checkpoint_every=checkpoint_every, chain_timeout=chain_timeout, bandwidth=bandwidth, latency=latency,
        memory_accounting=memory_accounting, replicas=counts,
    )
    live = _Live(iterations, quiet=as_json)

    def report(outcome) -> None:  # as soon as the run ends: closing the links may still hang after it
        live.stop()
        numbers = _report(outcome)
        if as_json:
            sys.stdout.write(json.dumps(numbers, indent=2) + "\n")
        else:
            console.print(_table(outcome, numbers))
            console.print(_summary(numbers))
        sys.stdout.flush()

    with live:
        outcome = asyncio.run(run_training(job, on_plan=live.show_plan, on_event=live.event, on_start=live.started,
                                           on_result=report))
    result = outcome.result
    if result.reason:
        raise ConsoleError(f"the run stopped after {result.step} iterations: {result.reason}")


def _replicas(text: str | None) -> tuple[int, ...]:
    """``3/2/1`` -> (3, 2, 1); ConsoleError for anything else."""
    if not text:
        return ()
    try:
        counts = tuple(int(part) for part in text.replace(",", "/").split("/"))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ConsoleError(f"--replicas must be positive node counts per stage like 3/2/1, got {text!r}")
    return counts


FINISH_GRACE = 60.0
"""Seconds ``litesrl train`` may take after the run finished (its checkpoint is written by then) to close
its links and report; a task or thread that does not let go cannot keep the process alive longer."""


_process_entry = False
"""True once ``litesrl``'s process entry point runs: only a whole ``litesrl`` process may end itself;
the command invoked in-process (typer's CliRunner in tests, an embedding program) never arms the timer."""


def enable_exit_watchdog() -> None:
    """Let a finished run end this process if it does not exit by itself (called by ``console.cli.main.main``)."""
    global _process_entry
    _process_entry = True


_watchdog: threading.Timer | None = None


def exit_if_stuck(code: int, grace: float = FINISH_GRACE) -> None:
    """Arm a daemon timer that ends the process with ``code`` if it is still alive ``grace`` s from now."""
    global _watchdog
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None

    def give_up() -> None:
        sys.stderr.write(f"litesrl train: still closing {grace:g} s after the run finished; exiting. "
                         "Where each thread and task was (please attach to a bug report):\n")
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        _print_tasks(loop)
        sys.stderr.flush()
        os._exit(code)

    disarm_exit_watchdog()
    _watchdog = threading.Timer(grace, give_up)
    _watchdog.daemon = True
    _watchdog.start()


def _print_tasks(loop: asyncio.AbstractEventLoop | None) -> None:
    """The stack of every task still on ``loop`` (what a hung close awaits: the threads show only the loop's wait)."""
    if loop is None:
        return
    try:  # read from another thread just before the process ends: a set changing under us is tolerated
        tasks = list(asyncio.all_tasks(loop))
    except RuntimeError:
        return
    for task in tasks:
        sys.stderr.write(f"{task!r} awaits (outermost first):\n")
        awaited = task.get_coro()
        while awaited is not None:  # the whole await chain (Task.print_stack shows only its first frame)
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                sys.stderr.write(f'  File "{frame.f_code.co_filename}", line {frame.f_lineno}, in {frame.f_code.co_name}\n')
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)


def disarm_exit_watchdog() -> None:
    """Cancel the timer: a command that ran ``train`` as one of its steps (``litesrl demo``) goes on after it."""
    global _watchdog
    if _watchdog is not None:
        _watchdog.cancel()
        _watchdog = None


class _Live:
    """The plan and the live progress bar, fed by the coordinator's events."""

    def __init__(self, iterations: int, quiet: bool) -> None:
        self.iterations, self.quiet = iterations, quiet
        self._bar = progress_bar() if not quiet else None
        self._progress = None
        self._task = None
        self._coordinator = None
        self._loss = math.nan
        self._times: list[float] = []
        self._note = ""

    def __enter__(self) -> _Live:
        if self._bar is not None:
            self._progress = self._bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """End the live bar (idempotent): the report goes below it."""
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar, self._progress = None, None

    def show_plan(self, plan, session) -> None:
        if self.quiet:
            return
        scale = session.time_scale
        self._progress.console.print(f"[bold]cluster[/] {session.description}")
        table = Table(title=f"CWB plan, {plan.mode} chains: cut after {', '.join(plan.cut_names) or 'nothing'}",
                      title_justify="left")
        for column in ("partition", "layers", "nodes", "memory", "work ms"):
            table.add_column(column)
        for s, nodes in enumerate(plan.stages):
            start, end = plan.units[s]
            table.add_row(f"P{s + 1}", f"{start}..{end - 1}", ", ".join(nodes), f"{plan.memory[s].total / 1e9:.2f} GB",
                          f"{plan.work_ms[s]:.0f}")
        if plan.idle:
            table.add_row("idle", "", ", ".join(plan.idle), "", "")
        self._progress.console.print(table)
        wall = f" = {plan.predicted_ms * scale:.0f} ms here at time scale {scale:g}" if scale else ""
        self._progress.console.print(
            f"predicted {plan.predicted_ms:.0f} ms per iteration on the boards{wall} "
            f"(dynamic {plan.replicas.best.iteration_ms:.0f}, fixed {plan.replicas.fixed_iteration_ms:.0f})")

    def started(self, coordinator) -> None:
        self._coordinator = coordinator
        loop = asyncio.get_running_loop()

        def interrupt() -> None:  # first Ctrl-C: finish the chains in flight, checkpoint, stop; a second one aborts
            loop.remove_signal_handler(signal.SIGINT)
            coordinator.request_stop("interrupted")
            if self._progress is not None:
                self._progress.console.print("stopping after the chains in flight and a checkpoint (Ctrl-C again to abort)")

        loop.add_signal_handler(signal.SIGINT, interrupt)
        if self._progress is not None:
            self._task = self._progress.add_task("training", total=self.iterations, info="assigning stages")

    def event(self, event) -> None:
        if event.TYPE == "run_finished" and _process_entry:
            exit_if_stuck(1 if event.reason else 0)
        if self._progress is None or self._task is None:
            return
        kind = event.TYPE
        if kind == "iteration":
            self._loss = event.loss
            self._times.append(time.monotonic())
            self._times = self._times[-50:]
        elif kind == "averaging":
            self._note = "averaging" if event.phase == "start" else ""
        elif kind == "node_lost":
            self._progress.console.print(f"[red]node {event.node} lost[/]: {event.reason}; requeued {list(event.requeued)}")
        elif kind == "chain_aborted":
            self._progress.console.print(f"[yellow]chain {event.chain} stalled[/]: {event.reason}; requeued [{event.batch}]")
        elif kind == "node_joined":
            self._progress.console.print(f"[green]node {event.node} rejoined stage {event.stage + 1}")
        elif kind not in ("run_started", "chain_done"):
            return
        rate = (len(self._times) - 1) / (self._times[-1] - self._times[0]) if len(self._times) > 1 else 0.0
        info = f"loss {self._loss:+.4f}  {rate:.2f} it/s  chains {self._coordinator.in_flight}  {self._note}"
        self._progress.update(self._task, completed=self._coordinator.step, total=self._coordinator.iterations, info=info)


def _report(outcome) -> dict:
    plan, result, scale = outcome.plan, outcome.result, outcome.time_scale
    ms = result.ms_per_iteration if result.completed else None
    return {
        "cluster": outcome.description,
        "plan": plan.to_dict(),
        "iterations": result.step,
        "completed_now": result.completed,
        "seconds": result.seconds,
        "ms_per_iteration": ms,
        "time_scale": scale,
        "board_ms_per_iteration": ms / scale if ms is not None and scale else ms,
        "predicted_board_ms_per_iteration": plan.predicted_ms,
        "final_loss": result.final_loss,
        "per_node": {node: {"stage": s.stage, "iterations": s.iterations, "mean_ms": s.mean_ms,
                            "board_mean_ms": s.mean_ms / scale if scale else s.mean_ms}
                     for node, s in result.per_node.items()},
        "reason": result.reason,
        "checkpoint": str(result.checkpoint) if result.checkpoint else None,
        "events": str(outcome.events),
    }


def _table(outcome, report: dict) -> Table:
    scale = outcome.time_scale
    unit = " (board ms)" if scale else " (ms)"
    table = Table(title=f"{outcome.plan.mode.capitalize()} chains: average runtime of each node in one iteration",
                  title_justify="left")
    for column in ("partition", "node", "runtime" + unit, "running iterations"):
        table.add_column(column, justify="right" if column != "node" else "left")
    for node, row in sorted(report["per_node"].items(), key=lambda item: (item[1]["stage"], item[0])):
        table.add_row(f"P{row['stage'] + 1}", node, f"{row['board_mean_ms']:.0f}", str(row["iterations"]))
    return table


def _summary(report: dict) -> str:
    if not report["ms_per_iteration"]:
        return "no iteration completed"
    text = (f"{report['completed_now']} iterations in {report['seconds']:.1f} s: {report['ms_per_iteration']:.0f} ms "
            f"per iteration")
    if report["time_scale"]:
        text += (f" = {report['board_ms_per_iteration']:.0f} ms on the boards (time scale {report['time_scale']:g}); "
                 f"predicted {report['predicted_board_ms_per_iteration']:.0f}")
    if report["checkpoint"]:
        text += f"\ncheckpoint: {report['checkpoint']}   events: {report['events']}"
    return text
