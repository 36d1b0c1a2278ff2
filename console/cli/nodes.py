"""`litesrl nodes ...`: secret, list, check, trust, bundle, deploy, start, profile, stop and status of the boards over SSH.

Exit codes: 0 every node ok; 1 other error; 2 bad inventory; 3 some node failed or could not be
reached (the table or JSON says which and why); 130 interrupted.
The inventory comes from ``--inventory``, else ``$LITESRL_INVENTORY``, else ``~/.config/litesrl/inventory.toml``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from console.errors import FleetError
from console.fleet.inventory import Inventory, InventoryNode, load_inventory
from engine.cwb.units import format_bytes

EXIT_NODE_FAILED = FleetError.exit_code

nodes_app = typer.Typer(
    name="nodes",
    help="Drive the Jetson nodes of the inventory over SSH. First run: secret, trust NAME, check, deploy, start; "
         "then profile NAME, `litesrl train -i FILE`, the console, stop. SSH states: up (connected, answering "
         "keepalives), stale (connected but silent for 3 keepalives, or its telemetry stopped), down/unreachable "
         "(no connection: refused, timed out, or the host key or login was refused).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

InventoryOpt = Annotated[Path | None, typer.Option(
    "--inventory", "-i", help="Inventory TOML (default: $LITESRL_INVENTORY, else ~/.config/litesrl/inventory.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts instead of tables.")]
NodesArg = Annotated[list[str] | None, typer.Argument(help="Node names (default: every node).", show_default=False)]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", "-t", help="Only nodes carrying this tag (repeatable).")]


def register(app: typer.Typer) -> None:
    """Add the ``nodes`` command group to the ``litesrl`` app."""
    app.add_typer(nodes_app, name="nodes")


@nodes_app.command("list")
def list_nodes(inventory: InventoryOpt = None, as_json: JsonOpt = False) -> None:
    """Show the inventory's nodes with their effective SSH target (after ~/.ssh/config); no network."""
    from console.fleet.target import resolve_target

    inv = load_inventory(inventory)
    targets = [resolve_target(node, inv.cluster) for node in inv.nodes]
    if as_json:
        _print_json({"cluster": inv.cluster, "nodes": [
            {**_plain(node), "ssh": _plain(target)} for node, target in zip(inv.nodes, targets)]})
        return
    table = _table("node", "ssh", "board", "memory", "data", "agent", "tags")
    table.title = f"cluster {inv.cluster.name} ({inv.path})"
    for node, target in zip(inv.nodes, targets):
        alias = f" ({node.host})" if node.host != target.hostname else ""
        table.add_row(node.name, target.address + alias, node.board, _size(node.memory_budget),
                      node.data_path or "-", f"{node.agent_bind}:{node.agent_port}", ", ".join(node.tags))
    Console().print(table)


@nodes_app.command()
def check(nodes: NodesArg = None, tag: TagOpt = None, inventory: InventoryOpt = None, as_json: JsonOpt = False) -> None:
    """Probe each node in the venv the agent uses: board, L4T/JetPack, Python, torch/CUDA, memory, the agent's
    runtime memory (torch + CUDA context, which CWB does not plan), disk, litesrl; names each missing module."""
    from console.fleet.check import check_node

    inv, selected = _select(inventory, nodes, tag)
    outcomes = _each(inv, selected, check_node)
    table = _table("node", "ssh", "board", "L4T / JetPack", "python", "torch / CUDA", "memory free/total",
                   "agent runtime", "disk free", "litesrl", "verdict")
    notes: list[str] = []
    for o in outcomes:
        r = o.value
        if r is None:
            table.add_row(o.node, _state(o), *[""] * 8, "[red]failed")
            notes.append(f"[red]{o.node}[/]: {o.error or o.status.reason}")
            continue
        board = r.detected_board or r.model or r.board
        cuda = ("CUDA " + (r.cuda_device or "yes")) if r.cuda else "no CUDA"
        table.add_row(o.node, _state(o), board, f"{r.l4t or '-'} / {r.jetpack or '-'}", r.python,
                      f"{r.torch} / {cuda}" if r.torch else "[red]none",
                      f"{_size(r.mem_available)} / {_size(r.mem_total)}", _size(r.overhead), _size(r.disk_free),
                      r.litesrl or "-", "[green]ready" if r.ready else f"[red]{len(r.problems)} problem(s)")
        notes.extend(f"[yellow]{o.node}[/]: {problem}" for problem in r.problems)
        notes.extend(f"[dim]{o.node}: {note}[/]" for note in r.notes)
    _finish(outcomes, as_json, table, ok=lambda o: o.ok and o.value.ready, notes=notes)


@nodes_app.command()
def trust(
    node: Annotated[str, typer.Argument(help="Node whose SSH host key to trust.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Trust without asking (scripts; "
                                                          "check the fingerprint another way).")] = False,
    inventory: InventoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show the node's host key fingerprint (SHA256) and, once confirmed, add it to known_hosts."""
    from console.fleet.hostkeys import (
        KeyVerdict,
        add_known_host,
        fetch_host_key,
        fingerprint,
        mismatch_message,
        verdict,
    )
    from console.fleet.target import resolve_target

    inv = load_inventory(inventory)
    target = resolve_target(inv.node(node), inv.cluster)
    key = asyncio.run(fetch_host_key(target, inv.cluster.connect_timeout))
    state, recorded = verdict(target, key)
    result = {"node": node, "host": target.known_hosts_name, "fingerprint": fingerprint(key),
              "known_hosts": str(target.known_hosts), "added": False}
    if state is KeyVerdict.TRUSTED:
        _say(as_json, result, f"{node}: {target.known_hosts_name} is already trusted ({fingerprint(key)})")
        return
    if state is KeyVerdict.MISMATCH:
        raise FleetError(f"{node}: {mismatch_message(target, key, recorded)}")
    if not yes:
        if not sys.stdin.isatty():
            raise FleetError(f"{node}: refusing to trust {fingerprint(key)} without confirmation: pass --yes")
        typer.echo(f"{node}: {target.known_hosts_name} offers {key.get_algorithm()} key {fingerprint(key)}")
        if not typer.confirm(f"Add it to {target.known_hosts}?", default=False):
            raise FleetError(f"{node}: host key not trusted")
    add_known_host(target, key)
    result["added"] = True
    _say(as_json, result, f"{node}: added {fingerprint(key)} for {target.known_hosts_name} to {target.known_hosts}")


@nodes_app.command()
def secret(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing secret (restart the agents after).")] = False,
    inventory: InventoryOpt = None,
) -> None:
    """Create the cluster secret the agents authenticate links with (0600, atomically); says where it is."""
    from console.fleet.secret import cluster_secret

    inv = load_inventory(inventory)
    state = cluster_secret(inv.cluster, create=True, replace=force)
    if state.created:
        typer.echo(f"created the cluster secret {state.source} (mode 0600); `litesrl nodes start` copies it to the nodes")
    else:
        typer.echo(f"the cluster secret is {state.source} (kept; --force makes a new one)")


@nodes_app.command()
def bundle(
    machine: Annotated[str, typer.Option(help="The boards' machine (uname -m): aarch64 for Jetsons.")] = "aarch64",
    python: Annotated[str, typer.Option(help="The boards' Python version (3.10 on JetPack 6).")] = "3.10",
    index_url: Annotated[str | None, typer.Option(help="Package index to download from (default: pip's).")] = None,
    find_links: Annotated[Path | None, typer.Option(help="Also take wheels from this folder (a local mirror).")] = None,
    no_index: Annotated[bool, typer.Option("--no-index", help="Use only --find-links, no index.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Download the wheels the board runtime uses beyond JetPack (the `board` extra: psutil, tifffile) for the
    boards' platform, where an index is reachable; kept for `deploy` to an offline rack."""
    from console.fleet.bundle import build_wheelhouse

    house = asyncio.run(build_wheelhouse(machine, python, index_url=index_url, find_links=find_links,
                                         no_index=no_index))
    _say(as_json, {"folder": str(house.folder), "requirements": list(house.requirements),
                   "wheels": [w.name for w in house.wheels]},
         f"wheelhouse {house.folder}: {', '.join(w.name for w in house.wheels) or 'no wheels'}")


@nodes_app.command()
def deploy(
    nodes: NodesArg = None,
    tag: TagOpt = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild the wheel and make each node's venv afresh.")] = False,
    with_deps: Annotated[bool, typer.Option("--with-deps", help="Also let pip install litesrl's dependencies from an "
                                                                 "index the nodes reach (not needed on JetPack).")] = False,
    inventory: InventoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build this project's wheel and install it, with the boards' wheelhouse, into each node's venv; no index needed.

    A node whose `python` cannot import torch is refused; a venv made from another `python` is made afresh.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from console.fleet.deploy import deploy_node
    from console.fleet.wheel import build_wheel

    inv, selected = _select(inventory, nodes, tag)
    console = Console(stderr=True, quiet=as_json)
    with console.status("building the litesrl wheel"):
        wheel = asyncio.run(build_wheel(rebuild=rebuild))
    console.print(f"wheel: {wheel}")
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console,
                  disable=as_json) as progress:
        tasks = {n.name: progress.add_task(f"{n.name}: connecting", total=None) for n in selected}

        def reporter(name: str) -> Callable[[str, int, int], None]:
            def report(step: str, done: int, total: int) -> None:
                if total:  # upload: bytes; the other steps only rename the task
                    progress.update(tasks[name], description=f"{name}: {step}", completed=done, total=total)
                else:
                    progress.update(tasks[name], description=f"{name}: {step}")
            return report

        outcomes = _each(inv, selected, lambda conn: deploy_node(
            conn, wheel, with_deps=with_deps, rebuild=rebuild, progress=reporter(conn.node.name)))
        for o in outcomes:
            if not o.ok:
                progress.update(tasks[o.node], description=f"{o.node}: failed", total=1, completed=0)
    table = _table("node", "ssh", "python", "litesrl", "venv", "extras", "result")
    notes: list[str] = []
    for o in outcomes:
        r = o.value
        if r is None:
            table.add_row(o.node, _state(o), "", "", "", "", "[red]failed")
            notes.append(f"[red]{o.node}[/]: {o.error or o.status.reason}")
        else:
            table.add_row(o.node, _state(o), r.python, r.version, r.venv, ", ".join(r.extras) or "-",
                          "[green]installed" + (" (new venv)" if r.created_venv else ""))
            notes.extend(f"[dim]{o.node}: {line}[/]" for line in r.missing)
    _finish(outcomes, as_json, table, notes=notes)


@nodes_app.command()
def start(
    nodes: NodesArg = None,
    tag: TagOpt = None,
    restart: Annotated[bool, typer.Option("--restart", help="Restart agents that run with other settings.")] = False,
    inventory: InventoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy the cluster secret to each node (creating it on first use) and start its agent detached."""
    from console.fleet.agent import start_agent
    from console.fleet.secret import cluster_secret

    inv, selected = _select(inventory, nodes, tag)
    state = cluster_secret(inv.cluster, create=True)
    if state.created:
        Console(stderr=True).print(f"created the cluster secret {state.source} (mode 0600)", highlight=False)
    outcomes = _each(inv, selected, lambda conn: start_agent(conn, state.secret, restart=restart))
    _agent_table(outcomes, as_json)


@nodes_app.command()
def profile(
    node: Annotated[str, typer.Argument(help="Node to measure the profile on (its own torch and GPU).")],
    out: Annotated[Path | None, typer.Option(help="Where to keep the profile here (default: the measured "
                                                     "profiles folder, where train and the console find it).")] = None,
    backbone: Annotated[str, typer.Option(help="resnet18, resnet34 or resnet50.")] = "resnet18",
    batch_size: Annotated[int, typer.Option(help="Images per mini-batch (paper: 64).")] = 64,
    image_size: Annotated[int, typer.Option(help="Side of each view in pixels (paper: 224).")] = 224,
    repeats: Annotated[int, typer.Option(help="Timed runs per unit; the median is kept.")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed runs per unit before timing.")] = 2,
    threads: Annotated[int | None, typer.Option(help="CPU threads torch may use on the board (default: all).")] = None,
    inventory: InventoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the CWB profiler on a board over SSH and keep the profile here for `partition`, `train` and the console."""
    from console.fleet.profiles import measure_on_node
    from console.services.backend import ProfileRequest

    inv = load_inventory(inventory)
    request = ProfileRequest(backbone=backbone, batch_size=batch_size, image_size=image_size, repeats=repeats,
                             warmup=warmup, threads=threads)
    err = Console(stderr=True, highlight=False, quiet=as_json)
    path, measured = asyncio.run(measure_on_node(inv, node, request.options(), err.print, out))
    _say(as_json, {"node": node, "path": str(path), "layers": len(measured.layers),
                   "compute_ms": measured.total_compute_ms, "state_bytes": measured.total_state_bytes},
         f"{node}: {len(measured.layers)} units, {measured.total_compute_ms:.1f} ms per mini-batch, "
         f"{format_bytes(measured.total_state_bytes)} of training state; kept {path}")


@nodes_app.command()
def stop(
    nodes: NodesArg = None,
    tag: TagOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds between SIGTERM and SIGKILL.")] = 10.0,
    inventory: InventoryOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Stop each node's agent: SIGTERM, then SIGKILL after --timeout seconds."""
    from console.fleet.agent import stop_agent

    inv, selected = _select(inventory, nodes, tag)
    _agent_table(_each(inv, selected, lambda conn: stop_agent(conn, timeout)), as_json)


@nodes_app.command()
def status(nodes: NodesArg = None, tag: TagOpt = None, inventory: InventoryOpt = None, as_json: JsonOpt = False) -> None:
    """Show the SSH state of each node and whether its agent runs, with the end of its log."""
    from console.fleet.agent import agent_status

    inv, selected = _select(inventory, nodes, tag)
    _agent_table(_each(inv, selected, agent_status), as_json, show_log=True)


def _agent_table(outcomes: list, as_json: bool, show_log: bool = False) -> None:
    table = _table("node", "ssh", "agent", "pid", *(("log",) if show_log else ()))
    notes: list[str] = []
    for o in outcomes:
        r = o.value
        if r is None:
            table.add_row(o.node, _state(o), "[red]failed", "", *([""] if show_log else []))
            notes.append(f"[red]{o.node}[/]: {o.error or o.status.reason}")
            continue
        shown = ("running" if r.running else "stopped") if r.action == "status" else r.action
        table.add_row(o.node, _state(o), f"[green]{shown}" if r.running else shown, str(r.pid or ""),
                      *(["\n".join(r.log_tail[-5:])] if show_log else []))
    _finish(outcomes, as_json, table, notes=notes)


def _select(
    inventory: Path | None, names: list[str] | None, tags: list[str] | None
) -> tuple[Inventory, tuple[InventoryNode, ...]]:
    inv = load_inventory(inventory)
    return inv, inv.select(names or (), tags or ())


def _each(inv: Inventory, nodes: tuple[InventoryNode, ...], action: Callable) -> list:
    from console.fleet.fleet import Fleet

    async def run() -> list:
        async with Fleet(inv, nodes) as fleet:
            return await fleet.each(action)

    return asyncio.run(run())


def _finish(outcomes: list, as_json: bool, table: Table, ok: Callable[[Any], bool] = lambda o: o.ok,
            notes: list[str] = ()) -> None:
    all_ok = all(ok(o) for o in outcomes)
    if as_json:
        _print_json({"ok": all_ok, "nodes": [
            {"node": o.node, "ok": ok(o), "state": o.status.state.value, "reason": o.status.reason,
             "error": o.error, "result": _plain(o.value) if o.value is not None else None} for o in outcomes]})
    else:
        console = Console()
        console.print(table)
        for note in notes:
            console.print(note, highlight=False)
    if not all_ok:
        raise typer.Exit(EXIT_NODE_FAILED)


def _table(*columns: str) -> Table:
    table = Table()
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _state(outcome: Any) -> str:
    state = outcome.status.state.value
    return f"[green]{state}" if outcome.status.ok else f"[red]{state}"


def _say(as_json: bool, result: dict, text: str) -> None:
    if as_json:
        _print_json(result)
    else:
        typer.echo(text)


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def _print_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=lambda v: _plain(v) if is_dataclass(v) else str(v)))


def _size(count: int | None) -> str:
    return "-" if count is None else format_bytes(count)
