"""`litesrl cluster up|down|status`: the emulated cluster of node agents on this machine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from console.cli.common import console
from console.cluster.local import DEFAULT_ACCOUNTING, DEFAULT_MEMORY, DEFAULT_TIME_SCALE
from console.errors import ConsoleError

cluster_app = typer.Typer(
    name="cluster",
    help="Start, stop and list the emulated cluster: real node agents on loopback pretending to be profiled boards.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of tables.")]


def register(app: typer.Typer) -> None:
    """Add the ``cluster`` command group to the ``litesrl`` app."""
    app.add_typer(cluster_app, name="cluster")


@cluster_app.command()
def up(
    nodes: Annotated[int, typer.Option("--nodes", min=1, help="Number of emulated boards.")] = 6,
    profile: Annotated[str, typer.Option(help="Board profile they emulate (tx2, xavier-nx, orin) or a profile .json.")] = "tx2",
    time_scale: Annotated[float, typer.Option(help="Multiply every emulated time (0.2 = "
                                                   "five times faster than the board).")] = DEFAULT_TIME_SCALE,
    bandwidth: Annotated[str, typer.Option(help="Emulated link between boards, e.g. 1Gbit.")] = "1Gbit",
    latency: Annotated[str, typer.Option(help="Emulated per-message latency, e.g. 0.5ms.")] = "0ms",
    memory_per_node: Annotated[str, typer.Option(help="Memory budget of each board (the "
                                                      "paper's 3 GB per TX2; its GB are GiB).")] = DEFAULT_MEMORY,
    memory_accounting: Annotated[str, typer.Option(
        help="How CWB counts a stage against it: paper (5.1: every layer's input and "
             "output, 7.6 GB for ResNet-18) or exact (what training keeps, 3.0 GB).")] = DEFAULT_ACCOUNTING,
    speeds: Annotated[str | None, typer.Option(help="Comma-separated speed per node relative "
                                                    "to the profile (default all 1).")] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset folder the boards read (default: a small synthetic one).")] = None,
    # Hidden: the console's way of starting a cluster it owns, not an operator's option.
    owner_pid: Annotated[int | None, typer.Option(hidden=True, help="The console that owns the cluster.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start NODES agent processes on 127.0.0.1, each an emulated board with its own port."""
    from console.cluster.local import up as start_cluster
    from console.cluster.profiles import resolve_profile
    from console.process_id import ProcessId

    resolve_profile(profile)
    owner = ProcessId.of(owner_pid) if owner_pid is not None else None
    speed_list = None
    if speeds:
        try:
            speed_list = [float(part) for part in speeds.split(",")]
        except ValueError:
            raise ConsoleError(f"--speeds must be numbers separated by commas, got {speeds!r}") from None
    if data is not None and not data.is_dir():
        raise ConsoleError(f"--data {data} is not a folder")
    with console.status(f"starting {nodes} agent(s)"):
        state = start_cluster(nodes, profile=profile, time_scale=time_scale, bandwidth=bandwidth, latency=latency,
                              memory_per_node=memory_per_node, memory_accounting=memory_accounting, speeds=speed_list,
                              data=data, owner=owner)
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    _print_state(state, f"local cluster up: {nodes} × {profile} at time scale {time_scale:g}")


@cluster_app.command()
def down(
    timeout: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """Stop every agent of the emulated cluster (SIGTERM, then SIGKILL); nothing is left running."""
    from console.cluster.local import down as stop_cluster

    outcome = stop_cluster(timeout=timeout)
    if as_json:
        typer.echo(json.dumps([{"node": node, "result": result} for node, result in outcome], indent=2))
        return
    if not outcome:
        console.print("no local cluster was up")
        return
    for node, result in outcome:
        console.print(f"{node}: {result}")


@cluster_app.command()
def status(as_json: JsonOpt = False) -> None:
    """List the agents of the emulated cluster and whether each still runs."""
    from console.cluster.local import read_state

    state = read_state()
    if state is None:
        if as_json:
            typer.echo(json.dumps({"up": False, "agents": []}))
            return
        console.print("no local cluster is up (start one with `litesrl cluster up`)")
        return
    if as_json:
        typer.echo(json.dumps({"up": True, **state.to_dict(),
                               "alive": {agent.name: agent.alive() for agent in state.agents}}, indent=2))
        return
    age = time.time() - state.started
    _print_state(state, f"local cluster: {len(state.agents)} × {state.profile}, time scale {state.time_scale:g}, "
                        f"up {age / 60:.0f} min")


def _print_state(state, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("node", "pid", "address", "speed", "memory", "state", "log"):
        table.add_column(column)
    for agent in state.agents:
        alive = agent.alive()
        table.add_row(agent.name, str(agent.pid), f"{agent.host}:{agent.port}", f"{agent.speed:g}", agent.memory_budget,
                      "[green]running" if alive else "[red]gone", agent.log_file)
    console.print(table)
    console.print(f"link {state.bandwidth}, latency {state.latency}; data {state.data}; secret {state.secret_file}")
