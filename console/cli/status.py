"""`litesrl status`: the console's overview without a terminal UI: cluster, fleet and training in progress.

Shows the emulated cluster's agents (with their own CPU and memory, as the console's fleet screen
does), the inventory's boards when there is an inventory (SSH link and agent), and every
``litesrl train`` running on this machine with its progress read from its event stream.
Exit codes: 0 all well; 3 an agent or board is down; 2 bad inventory; 1 other error.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from console.errors import FleetError, InventoryError

PROBE_SECONDS = 0.5
"""Window over which each agent's CPU share is measured."""


def register(app: typer.Typer) -> None:
    """Add the `status` command to the CLI."""
    app.command("status")(status_command)


def status_command(
    inventory: Annotated[Path | None, typer.Option(
        "--inventory", "-i", help="Also check these boards over SSH (default: $LITESRL_INVENTORY or "
                                  "~/.config/litesrl/inventory.toml when present).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")] = False,
) -> None:
    """Show the emulated cluster, the inventory's boards and any training in progress."""
    report = {"cluster": _cluster(), "fleet": _fleet(inventory), "training": _training()}
    healthy = (report["cluster"] is None or all(a["running"] for a in report["cluster"]["agents"])) and \
        (report["fleet"] is None or all(n["state"] == "up" for n in report["fleet"]["nodes"]))
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        _render(Console(highlight=False), report)
    if not healthy:
        raise typer.Exit(FleetError.exit_code)


def _cluster() -> dict[str, Any] | None:
    """The emulated cluster's agents with their CPU and memory, None when no cluster is recorded."""
    from console.cluster.local import read_state
    from console.services.agent_probe import AgentProbe, LocalAgent
    from console.services.backend import Reading
    from engine.cwb.units import parse_size

    state = read_state()
    if state is None:
        return None
    agents = [LocalAgent(a.name, a.pid, a.port, state.profile, parse_size(a.memory_budget), a.speed) for a in state.agents]

    async def probe():
        meter = await AgentProbe.open(PROBE_SECONDS)
        meter.read(agents)
        await asyncio.sleep(PROBE_SECONDS)
        readings = meter.read(agents)
        await meter.close()
        return readings

    readings = {item.node: item for item in asyncio.run(probe())}
    rows = []
    for recorded, agent in zip(state.agents, agents):
        item = readings[agent.name]
        load = item.agent if isinstance(item, Reading) and recorded.alive() else None
        rows.append({"node": agent.name, "running": load is not None, "pid": agent.pid,
                     "address": f"{recorded.host}:{recorded.port}", "speed": agent.speed,
                     "memory_budget_bytes": agent.memory_budget,
                     "cpu_percent": round(load.cpu_percent, 1) if load else None,
                     "rss_bytes": load.rss_bytes if load else None,
                     "reason": None if load else getattr(item, "reason", "not running")})
    return {"profile": state.profile, "time_scale": state.time_scale, "up_seconds": round(time.time() - state.started),
            "agents": rows}


def _fleet(path: Path | None) -> dict[str, Any] | None:
    """Each inventory node's SSH link and agent, None without an inventory."""
    from console.fleet.agent import agent_status
    from console.fleet.fleet import Fleet
    from console.fleet.inventory import load_inventory, resolve_inventory_path

    try:
        inventory = load_inventory(resolve_inventory_path(path))
    except InventoryError:
        if path is not None:
            raise
        return None  # no inventory anywhere: nothing to check

    async def check():
        async with Fleet(inventory) as fleet:
            outcomes = await fleet.each(agent_status)
        return outcomes

    nodes = []
    for outcome in asyncio.run(check()):
        agent = outcome.value
        nodes.append({"node": outcome.node, "state": outcome.status.state.value, "reason": outcome.status.reason or outcome.error,
                      "agent_running": agent.running if agent else None, "agent_pid": agent.pid if agent else None})
    return {"inventory": str(inventory.path), "cluster": inventory.cluster.name, "nodes": nodes}


def _training() -> list[dict[str, Any]]:
    """Every training run in progress on this machine, with its progress so far."""
    from console.services.run_status import find_runs, read_progress

    runs = []
    for run in find_runs():
        state = read_progress(run)
        rate = state.throughput()
        runs.append({
            "pid": run.pid, "cluster": run.cluster, "events": str(run.events),
            "mode": state.mode or None, "policy": state.policy or None,
            "stages": [list(names) for names in state.stages], "completed": state.completed, "iterations": state.total,
            "seconds": round(state.t, 1), "loss": state.losses[-1] if state.losses else None,
            "iterations_per_second": round(rate, 3) if rate else None,
            "lost": sorted(name for name, a in state.nodes.items() if a.state == "lost"),
        })
    return runs


def _render(out: Console, report: dict[str, Any]) -> None:
    cluster = report["cluster"]
    if cluster is None:
        out.print("[dim]no emulated cluster (start one with `litesrl cluster up`)[/]")
    else:
        table = Table(title=f"emulated cluster: {len(cluster['agents'])} × {cluster['profile']}, time ×"
                            f"{cluster['time_scale']:g}, up {cluster['up_seconds'] / 60:.0f} min", title_justify="left")
        for column in ("node", "state", "pid", "address", "speed", "CPU", "memory / budget"):
            table.add_column(column, justify="right" if column in ("CPU", "pid") else "left")
        for a in cluster["agents"]:
            state = "[green]● running" if a["running"] else f"[red]✖ {a['reason']}"
            memory = f"{a['rss_bytes'] / 2**20:.0f} / {a['memory_budget_bytes'] / 2**20:.0f} MiB" if a["running"] else ""
            table.add_row(a["node"], state, str(a["pid"]), a["address"], f"{a['speed']:g}",
                          f"{a['cpu_percent']:.0f}%" if a["running"] else "", memory)
        out.print(table)
    fleet = report["fleet"]
    if fleet is not None:
        table = Table(title=f"fleet {fleet['cluster']} ({fleet['inventory']})", title_justify="left")
        for column in ("node", "SSH", "agent", "why"):
            table.add_column(column)
        for n in fleet["nodes"]:
            link = "[green]up" if n["state"] == "up" else f"[red]{n['state']}"
            agent = "" if n["agent_running"] is None else (f"running (pid {n['agent_pid']})" if n["agent_running"] else "stopped")
            table.add_row(n["node"], link, agent, n["reason"] or "")
        out.print(table)
    if not report["training"]:
        out.print("[dim]no training in progress[/]")
    for run in report["training"]:
        layout = "/".join(str(len(names)) for names in run["stages"]) or "?"
        line = (f"[bold]training[/] pid {run['pid']} on {run['cluster']}: {run['mode'] or 'starting'} chains {layout} · "
                f"{run['completed']}/{run['iterations']} iterations · {run['seconds']:.0f} s")
        if run["loss"] is not None:
            line += f" · loss {run['loss']:.4f}"
        if run["iterations_per_second"]:
            line += f" · {run['iterations_per_second']:.2f} it/s"
        if run["lost"]:
            line += f" · [red]lost {', '.join(run['lost'])}[/]"
        out.print(line)
        out.print(f"  events {run['events']}", style="dim")
