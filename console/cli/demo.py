"""`litesrl demo`: the whole story headless — profile, partition, dynamic-chain training on the
emulated cluster, the paper-style report, and an evaluation of what was trained."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.rule import Rule

from console.cli.common import console
from engine.dhp.defaults import AVERAGE_EVERY


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's data, profile, run and evaluation.")] = Path("runs/demo"),
    nodes: Annotated[int, typer.Option(min=3, help="Emulated TX2-like boards.")] = 6,
    iterations: Annotated[int, typer.Option(min=1, help="DHP iterations (mini-batches) to train.")] = 60,
    average_every: Annotated[int, typer.Option(min=0, help="Replica averaging period (the paper: 100).")] = AVERAGE_EVERY,
) -> None:
    """Run profile -> partition -> dynamic training -> report -> evaluation, on an emulated cluster."""
    from console.cli.cluster import down as cluster_down
    from console.cli.cluster import up as cluster_up
    from console.cli.data import synth
    from console.cli.evaluate import evaluate_command
    from console.cli.partition import partition_command
    from console.cli.profile import profile_command
    from console.cli.train import disarm_exit_watchdog, train
    from console.cluster.local import DEFAULT_MEMORY, read_state
    from console.cluster.profiles import resolve_profile
    from console.errors import ConsoleError

    state = read_state()
    if state is not None and any(agent.alive() for agent in state.agents):
        raise ConsoleError("an emulated cluster is already up; stop it with `litesrl cluster down` before the demo")
    data = out / "data"
    if not data.is_dir():
        _step("1/6  Data: seeded synthetic optical scenes (5 land-cover classes)")
        synth(data, modality="optical", per_class=40, size=48, classes=5, seed=0)
    _step("2/6  CWB profiling of Lite-SRL/ResNet-18 on this machine (small batch, so it takes seconds)")
    profile_command(out=out / "profile.json", batch_size=8, image_size=32, repeats=2, warmup=1)
    console.print("A Jetson runs `litesrl profile` at the paper's setting (batch 64, 224 px); the emulated boards use"
                  " the TX2 reference profile derived from such a measurement (assets/profiles/README.md).")
    _step(f"3/6  CWB partition search for {nodes} TX2 boards with {DEFAULT_MEMORY} each, 1 Gbit links")
    partition_command(profile_path=resolve_profile("tx2"), nodes=nodes, memory_per_node=DEFAULT_MEMORY, bandwidth="1Gbit",
                      method="all", top=3)
    _step(f"4/6  Emulated cluster: {nodes} real node agents on 127.0.0.1, each a TX2 (time x0.2)")
    cluster_up(nodes=nodes, data=data)
    try:
        _step(f"5/6  Dynamic chains (paper Fig. 4b): {iterations} mini-batches, replicas averaged every {average_every}")
        # A stalled chain is given up after 30 s (a real run waits 120 s): the demo's boards hold a chain ~3 s.
        try:
            train(cluster="local", mode="dynamic", iterations=iterations, average_every=average_every, out=out / "train",
                  chain_timeout=30.0, emulate_time=True)
        finally:
            disarm_exit_watchdog()  # train's exit timer is for `litesrl train` itself; the demo goes on to evaluate
    finally:
        cluster_down()
    _step("6/6  Freeze evaluation of the trained encoder (linear probe, 20 % labels) against random init")
    console.print("Synthetic scenes are easy to tell apart; the real-data figures (RSSCN7, MSTAR) are in BENCHMARKS.md.")
    scores = {}
    for name, checkpoint in (("DHP-trained", out / "train" / "checkpoint.pt"), ("random init", None)):
        evaluate_command(data=data, checkpoint=checkpoint, modality="optical", image_size=32, out=out / "eval" / name.split()[0],
                         tsne=checkpoint is not None)
        scores[name] = json.loads((out / "eval" / name.split()[0] / "results.json").read_text())["overall_accuracy"]
    console.print(Rule())
    console.print("demo finished: " + ", ".join(f"{name} {value:.1%}" for name, value in scores.items())
                  + f"; everything is in {out}/ (events.jsonl draws in `litesrl-console`)")


def _step(title: str) -> None:
    console.print()
    console.print(Rule(f"[bold]{title}", align="left"))
