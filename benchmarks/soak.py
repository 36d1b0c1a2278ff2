"""Soak: RSS of every process over a long emulated DHP run, flat after warm-up (< 5 % growth).

One command: ``python benchmarks/soak.py`` (defaults: 12 emulated TX2 agents x 1000 iterations). It
starts its own emulated cluster the way ``dhp_tables.py`` does (real agent processes on loopback, in
a temporary state folder, 3 GiB each, paper accounting, 1 Gbit/s links, time-scaled board times,
the small emulated workload) and trains with ``litesrl train``'s code path (``run_training``, this
process is the coordinator). A thread samples the RSS of the coordinator and of every agent about
once a second. Each process's RSS once warm-up is over (``--warmup`` of the iterations, default
10 %) is compared with its RSS at the end; more than 5 % growth is flagged. Draws all the curves in
one PNG and writes its section of BENCHMARKS.md (``--no-write``: neither, the PNG goes to a
temporary file). ``--smoke`` is a tiny run (3 nodes x 20 iterations, nothing written).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from report import pyplot, save_figure, write_section  # noqa: E402

import psutil  # noqa: E402
from dhp_tables import BANDWIDTH, MEMORY, emulation_report  # noqa: E402

from console.cluster import local  # noqa: E402
from console.cluster.training import TrainJob, run_training  # noqa: E402

TITLE = "Soak: RSS of every process over a long emulated DHP run"
PNG = REPO / "assets" / "benchmarks" / "soak.png"
TARGET = 0.05
"""Largest RSS growth from the end of warm-up to the end of the run that counts as flat."""


class Sampler(threading.Thread):
    """Samples each named process's RSS every ``period`` seconds, tagged with the iterations completed then."""

    def __init__(self, processes: dict[str, int], period: float) -> None:
        super().__init__(daemon=True)
        self.processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.period, self.completed, self.began = period, 0, time.monotonic()
        self.samples: list[tuple[float, int, dict[str, int]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            rss = {}
            for name, process in self.processes.items():
                try:
                    rss[name] = process.memory_info().rss
                except psutil.Error:  # an agent that died: its curve stops; the run itself reports why
                    pass
            self.samples.append((time.monotonic() - self.began, self.completed, rss))
            self.halt.wait(self.period)

    def on_event(self, event) -> None:
        # Called on the coordinator's event loop; a plain int store is safe to read from the thread.
        if event.TYPE == "iteration":
            self.completed += 1


def growth(samples: list, name: str, warm_iterations: int, iterations: int) -> dict:
    """RSS of ``name`` at the first sample after warm-up and at the last one taken while iterations still ran, the
    growth between them, and the last sample of all (after the run's final averaging and checkpoint)."""
    mine = [(t, done, rss[name]) for t, done, rss in samples if name in rss]
    warm = next((s for s in mine if s[1] >= warm_iterations), mine[0])
    # The run's wrap-up (final averaging, checkpoint) is a one-off, not growth: the end is the last sample
    # taken before the last iteration completed.
    end = [s for s in mine if s[1] < iterations][-1:] or mine[-1:]
    return {"warm_t": warm[0], "warm": warm[2], "end_t": end[0][0], "end": end[0][2], "final": mine[-1][2],
            "peak": max(s[2] for s in mine), "growth": end[0][2] / warm[2] - 1}


def plot(samples: list, names: list[str], warm_t: float, path: Path, title: str) -> None:
    figure, axes = pyplot().subplots(figsize=(10, 5.5))
    for name in names:
        points = [(t, rss[name] / 2**20) for t, _, rss in samples if name in rss]
        axes.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.2 if name == "coordinator" else 0.8)
    axes.axvline(warm_t, color="grey", linestyle="--", linewidth=0.8, label="end of warm-up")
    axes.set_xlabel("seconds since the run started")
    axes.set_ylabel("RSS (MiB)")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, ncol=2, loc="center right")
    axes.grid(alpha=0.3)
    save_figure(figure, path)


async def soak(args, state: local.ClusterState, out: Path) -> dict:
    processes = {"coordinator": os.getpid(), **{agent.name: agent.pid for agent in state.agents}}
    sampler = Sampler(processes, args.period)
    job = TrainJob(cluster="local", iterations=args.iterations, average_every=args.average_every,
                   emulate_time=True, out=out)
    plan = {}
    sampler.start()
    try:
        outcome = await run_training(job, on_plan=lambda p, _session: plan.setdefault("plan", p),
                                     on_event=sampler.on_event)
    finally:
        sampler.halt.set()
        sampler.join()
    result = outcome.result
    if result.reason:
        raise SystemExit(f"soak run stopped: {result.reason}")
    emulation = await emulation_report(state)
    steps = sum(r.get("stretches", 0) for r in emulation.values())
    overruns = sum(r.get("overruns", 0) for r in emulation.values())
    return {"samples": sampler.samples, "names": list(processes), "iterations": result.completed,
            "seconds": result.seconds, "scale": outcome.time_scale,
            "stages": "/".join(str(len(n)) for n in outcome.plan.stages), "idle": len(outcome.plan.idle),
            "mode": job.mode, "overrun_share": overruns / steps if steps else 0.0}


def report(run: dict, args, load: float, wall: float, png: str) -> str:
    """The BENCHMARKS.md section body (``report.write_section`` adds the title, command and machine)."""
    warm_iterations = max(1, round(args.warmup * args.iterations))
    rows = {name: growth(run["samples"], name, warm_iterations, run["iterations"]) for name in run["names"]}
    flagged = [name for name, row in rows.items() if row["growth"] > TARGET]
    worst = max(rows, key=lambda name: rows[name]["growth"])
    idle = f" + {run['idle']} idle" if run["idle"] else ""
    lines = [f"- load average before the run: {load:.2f} (2 cores shared with other work: indicative); whole "
             f"benchmark {wall / 60:.1f} min",
             f"- cluster: {args.nodes} emulated TX2 agents (`assets/profiles/tx2-*.json`), {MEMORY} each, paper "
             f"memory accounting, {BANDWIDTH} links, time scale {run['scale']:g}; resnet18, {run['mode']} chains, "
             f"{run['stages']} nodes per stage{idle}, "
             f"averaging every {args.average_every}; the small emulated workload (as `dhp_tables.py`)",
             f"- {run['iterations']} iterations in {run['seconds']:.0f} s; {len(run['samples'])} RSS samples "
             f"(every {args.period:g} s); warm-up = the first {warm_iterations} iterations ({args.warmup:.0%}); "
             f"overrun steps {run['overrun_share']:.1%}", "",
             "| process | RSS after warm-up (MiB) | at (s) | RSS at the last iteration (MiB) | at (s) | growth | > 5 % "
             "| after wrap-up (MiB) | peak (MiB) |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['warm'] / 2**20:.1f} | {row['warm_t']:.0f} | {row['end'] / 2**20:.1f} "
                     f"| {row['end_t']:.0f} | {row['growth']:+.2%} | {'**yes**' if name in flagged else 'no'} "
                     f"| {row['final'] / 2**20:.1f} | {row['peak'] / 2**20:.1f} |")
    lines += ["", f"![RSS of every process during the soak run]({png})", "", "Target:", "",
              f"- flat after warm-up (< 5 % RSS growth, every process): {'not met' if flagged else 'met'} "
              f"(worst {worst} {rows[worst]['growth']:+.2%}"
              f"{'; over 5 %: ' + ', '.join(flagged) if flagged else ''})"]
    return "\n".join(lines + [""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=12, help="Emulated agents.")
    parser.add_argument("--iterations", type=int, default=1000, help="Training iterations.")
    parser.add_argument("--time-scale", type=float, default=0.1,
                        help="Emulated time scale (board times x this; a stage's real work must stay below its target).")
    parser.add_argument("--average-every", type=int, default=100, help="Replica averaging period (paper: 100).")
    parser.add_argument("--warmup", type=float, default=0.1, help="Share of the iterations counted as warm-up.")
    parser.add_argument("--period", type=float, default=1.0, help="Seconds between RSS samples.")
    parser.add_argument("--smoke", action="store_true", help="Tiny run: 3 nodes x 20 iterations, nothing written.")
    parser.add_argument("--no-write", action="store_true", help="Write neither BENCHMARKS.md nor the kept PNG.")
    args = parser.parse_args()
    if args.smoke:
        args.nodes, args.iterations, args.average_every, args.no_write = 3, 20, 10, True
    if args.nodes < 1 or args.iterations < 1 or not args.time_scale > 0 or not 0 <= args.warmup < 1 or not args.period > 0:
        parser.error("--nodes and --iterations must be >= 1, --time-scale and --period > 0, 0 <= --warmup < 1")
    load, began = os.getloadavg()[0], time.monotonic()
    home = Path(tempfile.mkdtemp(prefix="litesrl-soak-"))
    saved = {key: os.environ.get(key) for key in ("XDG_STATE_HOME", "XDG_CONFIG_HOME")}
    os.environ["XDG_STATE_HOME"], os.environ["XDG_CONFIG_HOME"] = str(home / "state"), str(home / "config")
    try:
        print(f"starting {args.nodes} emulated TX2 agents at time scale {args.time_scale:g}", flush=True)
        state = local.up(args.nodes, profile="tx2", time_scale=args.time_scale, bandwidth=BANDWIDTH,
                         memory_per_node=MEMORY, memory_accounting="paper")
        run = asyncio.run(soak(args, state, home / "run"))
    finally:
        local.down()
        shutil.rmtree(home, ignore_errors=True)
        # Restored so that matplotlib's cache does not recreate the removed folder.
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    png = Path(tempfile.gettempdir()) / "litesrl-soak.png" if args.no_write else PNG
    warm_iterations = max(1, round(args.warmup * args.iterations))
    warm_t = next((t for t, done, _ in run["samples"] if done >= warm_iterations), 0.0)
    plot(run["samples"], run["names"], warm_t, png,
         f"RSS, {args.nodes} emulated nodes x {run['iterations']} iterations (time scale {run['scale']:g})")
    link = png.relative_to(REPO).as_posix() if png.is_relative_to(REPO) else str(png)
    text = report(run, args, load, time.monotonic() - began, link)
    print(text)
    print(f"curves: {png}")
    if not args.no_write:
        write_section(TITLE, "soak.py", text)


if __name__ == "__main__":
    main()
