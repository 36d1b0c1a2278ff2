"""`litesrl partition`: where to cut Lite-SRL and how many boards serve each cut (CWB, Algorithm 2), explained."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from console.cli.partition_plans import render_recommendation
from console.partition_text import BLOCKS, e_text, layer_owners, stage_colour
from engine.cwb import baselines
from engine.cwb.cost import ACCOUNTINGS, OBJECTIVES, Candidate, check_choice
from engine.cwb.nodes_spec import NodeSpec, identical_nodes, load_nodes_file
from engine.cwb.planner import DEFAULT_ACCOUNTING, DEFAULT_BANDWIDTH, DEFAULT_OBJECTIVE, plan_partitions
from engine.cwb.profile_format import Profile, load_profile
from engine.cwb.replicas import ReplicaReport, replicas_for
from engine.cwb.search import SearchResult
from engine.cwb.transfer import Network
from engine.cwb.units import format_bandwidth, format_bytes, parse_bandwidth, parse_duration_ms, parse_size
from engine.errors import ConfigError, PartitionError


def register(app: typer.Typer) -> None:
    """Add the `partition` command to the CLI."""
    app.command("partition")(partition_command)


def partition_command(
    profile_path: Annotated[Path, typer.Option("--profile", help="CWB profile JSON (litesrl-profile v1).")],
    nodes: Annotated[int | None, typer.Option("--nodes", min=1, help="Number of identical nodes.")] = None,
    memory_per_node: Annotated[
        str | None, typer.Option("--memory-per-node", help="Memory budget per node with --nodes, e.g. 3GB.")
    ] = None,
    bandwidth: Annotated[
        str | None, typer.Option(help=f"Link speed, e.g. 1Gbit or 125MB/s (default: nodes file, else {DEFAULT_BANDWIDTH}).")
    ] = None,
    latency: Annotated[str | None, typer.Option(help="Per-message latency, e.g. 0.2ms (default: nodes file, else 0).")] = None,
    partitions: Annotated[
        int | None, typer.Option(min=1, help="Number of partitions (default: the fewest that fit memory).")
    ] = None,
    nodes_file: Annotated[
        Path | None, typer.Option("--nodes-file", help="TOML file of mixed nodes (speed, memory, links).")
    ] = None,
    method: Annotated[
        Literal["cwb", "pipedream", "gpipe", "all"], typer.Option(help="Partitioner; 'all' shows them side by side.")
    ] = "cwb",
    top: Annotated[int, typer.Option(min=1, help="How many CWB candidates to list.")] = 10,
    memory_accounting: Annotated[
        str, typer.Option("--memory-accounting", help="exact (what training keeps) or paper (5.1: every layer's input "
                          "and output + weights, gradients, momentum; ~2.7x exact).")
    ] = DEFAULT_ACCOUNTING,
    objective: Annotated[
        str, typer.Option(help="E's shares: paper (each node's compute / T, transfers in T: Algorithm 2) or busy "
                          "((compute + send) / T: balances occupancy, even by padding with transfers).")
    ] = DEFAULT_OBJECTIVE,
    keep_order: Annotated[
        bool, typer.Option("--keep-order", help="Run the stages on the nodes in the given order; do not search orders.")
    ] = False,
    recommend: Annotated[
        bool, typer.Option("--recommend/--no-recommend", help="Also search the fastest plan (cut x replicas x chain mode "
                           "x next-hop policy, simulated) and the baselines beside it.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the same report as JSON.")] = False,
) -> None:
    """Search the partition with the best equipment-utilisation index E and plan the replicas per stage."""
    check_choice("memory accounting", memory_accounting, ACCOUNTINGS)
    check_choice("objective", objective, OBJECTIVES)
    profile = load_profile(profile_path)
    pool, network = _cluster(nodes, memory_per_node, nodes_file, bandwidth, latency)
    planned = plan_partitions(profile, pool, network, partitions=partitions, accounting=memory_accounting,
                              objective=objective, reorder=not keep_order, top=top, recommend=recommend)
    model, partitions, automatic = planned.model, planned.partitions, planned.automatic
    results: dict[str, SearchResult | Candidate | str] = {}
    if method in ("cwb", "all"):
        results["cwb"] = planned.result
    for name in ("pipedream", "gpipe"):
        if method in (name, "all"):
            try:
                results[name] = getattr(baselines, name)(model, pool, partitions)
            except PartitionError as exc:
                if method != "all":
                    raise
                results[name] = str(exc)
    chosen_name = "cwb" if "cwb" in results else method
    chosen = results[chosen_name]
    chosen = chosen.best if isinstance(chosen, SearchResult) else chosen
    if chosen is planned.best:
        replicas = planned.replicas
    else:
        replicas = replicas_for(model, chosen, pool) if isinstance(chosen, Candidate) and chosen.fits else None
    if as_json:
        data = _report(profile_path, profile, pool, network, model, partitions, automatic, results, chosen_name, replicas)
        if planned.recommendation is not None:
            data.update(planned.recommendation.to_dict())
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return
    out = Console(highlight=False)
    _render(out, profile, pool, network, model, partitions, automatic, results, chosen, replicas)
    if planned.recommendation is not None:
        render_recommendation(out, planned.recommendation, model)


def _cluster(
    count: int | None, memory: str | None, nodes_file: Path | None, bandwidth: str | None, latency: str | None
) -> tuple[tuple[NodeSpec, ...], Network]:
    """Nodes and network; the command line wins over the nodes file, which wins over the defaults."""
    rate = parse_bandwidth(bandwidth) if bandwidth is not None else None
    delay = parse_duration_ms(latency) if latency is not None else None
    if nodes_file is not None:
        if count is not None or memory is not None:
            raise ConfigError("give either --nodes-file or --nodes with --memory-per-node, not both")
        spec = load_nodes_file(nodes_file)
        if rate is None and spec.bandwidth is None:
            rate = parse_bandwidth(DEFAULT_BANDWIDTH)
        return spec.nodes, spec.network(rate, delay)
    if count is None or memory is None:
        raise ConfigError("give --nodes N with --memory-per-node SIZE (e.g. --nodes 6 --memory-per-node 3GB), or --nodes-file")
    network = Network(bandwidth=rate or parse_bandwidth(DEFAULT_BANDWIDTH), latency_ms=delay or 0.0)
    return identical_nodes(count, parse_size(memory)), network


def _report(path, profile: Profile, pool, network: Network, model, partitions, automatic, results, chosen_name,
            replicas) -> dict[str, Any]:
    """The JSON form of the report."""
    methods: dict[str, Any] = {}
    for name, result in results.items():
        if isinstance(result, SearchResult):
            methods[name] = {
                "best": result.best.to_dict(),
                "candidates": [c.to_dict() for c in result.candidates],
                "feasible_count": result.feasible_count,
                "orders_searched": result.orders_searched,
            }
        elif isinstance(result, Candidate):
            methods[name] = {"best": result.to_dict()}
        else:
            methods[name] = {"error": result}
    return {
        "profile": {
            "path": str(path),
            "settings": profile.to_dict()["settings"],
            "layers": list(profile.names),
            "total_compute_ms": profile.total_compute_ms,
            "total_state_bytes": profile.total_state_bytes,
            "total_paper_bytes": profile.total_paper_bytes,
            "data_ms": profile.data_ms,
        },
        "nodes": [
            {"name": n.name, "board": n.board, "speed": n.speed, "memory_bytes": n.memory_bytes} for n in pool
        ],
        "network": {
            "bandwidth_bytes_per_s": network.bandwidth,
            "latency_ms": network.latency_ms,
            "links": [{"from": a, "to": b, "bandwidth_bytes_per_s": r} for a, b, r in network.links],
        },
        "memory_accounting": model.accounting,
        "objective": model.objective,
        "partitions": partitions,
        "partitions_automatic": automatic,
        "methods": methods,
        "chosen": chosen_name,
        "replicas": replicas.to_dict() if replicas is not None else None,
    }


def _render(out: Console, profile: Profile, pool, network, model, partitions, automatic, results, chosen, replicas) -> None:
    s = profile.settings
    paper_count = f" ({format_bytes(profile.total_paper_bytes)} as the paper counts)" if profile.has_paper_bytes else ""
    data = f" + {profile.data_ms:.0f} ms data work on stage 1" if profile.data_ms else ""
    out.print(
        f"[bold]Profile[/] {s.model}/{s.backbone} · batch {s.batch_size} · {s.optimizer} · {s.dtype} · "
        f"{len(profile.layers)} layers · {format_bytes(profile.total_state_bytes)} training state{paper_count} · "
        f"{profile.total_compute_ms:.0f} ms per step{data} on {s.device}"
    )
    out.print(f"[bold]Memory accounting[/] {model.accounting}: " + (
        "every layer's input and output + weights, gradients, momentum (paper 5.1)" if model.accounting == "paper"
        else "weights, gradients, optimizer state, saved activations, cut buffers (what training keeps)"))
    boards = {}
    for node in pool:
        boards.setdefault((node.board, node.speed, node.memory_bytes), []).append(node.name)
    out.print(
        "[bold]Nodes[/] "
        + ", ".join(f"{len(names)} × {b} (speed {sp:g}, {format_bytes(m)})" for (b, sp, m), names in boards.items())
        + f" · [bold]network[/] {format_bandwidth(network.bandwidth)}, {network.latency_ms:g} ms latency"
        + (f", {len(network.links)} per-link overrides" if network.links else "")
    )
    why = " (the fewest that fit memory)" if automatic else ""
    out.print(f"[bold]Partitions[/] {partitions}{why}")
    result = results.get("cwb")
    if isinstance(result, SearchResult):
        out.print(
            f"CWB searched {result.orders_searched} node order(s); {result.feasible_count} cut set(s) fit memory; "
            f"best E = {e_text(result.best)} ({_objective_text(model.objective)})"
        )
        out.print(_candidate_table(result, profile, show_nodes=len(boards) > 1))
    if len(results) > 1 or "cwb" not in results:
        out.print(_comparison_table(results))
    out.print(_strip(profile, chosen))
    out.print(_stage_bars(chosen))
    if replicas is not None:
        out.print(_replica_table(replicas))
    else:
        out.print("[yellow]The chosen partition does not fit the nodes' memory: no replica plan.[/]")


def _objective_text(objective: str) -> str:
    if objective == "paper":
        return "E = -ln Σ(c_i/T - 1/n)², c_i each node's compute, T all compute + transfers: eq. 9"
    return "objective busy: E = -ln variance of the busy shares (compute + send)/T"


def _candidate_table(result: SearchResult, profile: Profile, show_nodes: bool) -> Table:
    table = Table(title="CWB candidates, best E first (per node: busy = compute + send)", title_justify="left")
    columns = ["", "cut after"] + (["nodes"] if show_nodes else []) + ["busy ms", "T ms", "memory GB", "share", "E"]
    for column in columns:
        table.add_column(column, justify="right" if column == "E" else "left")
    for index, c in enumerate(result.candidates):
        row = ["★" if index == 0 else str(index + 1), ", ".join(c.cut_names) or "—"]
        if show_nodes:
            row.append("→".join(c.order))
        row += [
            "/".join(f"{st.busy_ms:.0f}" for st in c.stages),
            f"{c.minibatch_ms:.0f}",
            "/".join(f"{st.memory_bytes / 1e9:.2f}" for st in c.stages),
            "/".join(f"{st.share:.0%}" for st in c.stages),
            e_text(c),
        ]
        table.add_row(*row)
    return table


def _comparison_table(results) -> Table:
    table = Table(title="Methods side by side (scored by the same cost model)", title_justify="left")
    for column in ("method", "cut after", "slowest ms", "T ms", "E", "fits memory"):
        table.add_column(column)
    for name, result in results.items():
        if isinstance(result, str):
            table.add_row(name, f"[red]{result}[/]", "", "", "", "")
            continue
        c = result.best if isinstance(result, SearchResult) else result
        fits = "[green]yes[/]" if c.fits else "[red]no: " + ", ".join(
            f"P{st.index + 1} {st.memory_bytes / 1e9:.2f}>{st.memory_budget / 1e9:.2f}GB" for st in c.stages if not st.fits
        ) + "[/]"
        table.add_row(name, ", ".join(c.cut_names) or "—", f"{c.bottleneck_ms:.0f}", f"{c.minibatch_ms:.0f}", e_text(c), fits)
    return table


def _spark(values: list[float]) -> str:
    top = max(values) or 1.0
    return "".join(BLOCKS[min(len(BLOCKS) - 1, math.ceil(v / top * (len(BLOCKS) - 1)))] for v in values)


def _strip(profile: Profile, chosen: Candidate) -> Panel:
    """One cell per layer coloured by partition, cut marks, and per-layer time / memory sparklines."""
    owner = layer_owners(len(profile.layers), chosen)
    cells = Text()
    for i in range(len(profile.layers)):
        cells.append("█", style=stage_colour(owner[i]))
        if i in chosen.cuts:
            cells.append("│", style="bold")
    times = _interleave(_spark([layer.compute_ms for layer in profile.layers]), chosen.cuts)
    memory = _interleave(_spark([float(layer.state_bytes) for layer in profile.layers]), chosen.cuts)
    legend = Text()
    for stage in chosen.stages:
        colour = stage_colour(stage.index)
        legend.append(f"█ P{stage.index + 1} ", style=colour)
        legend.append(
            f"{profile.layers[stage.first_layer].name} … {profile.layers[stage.last_layer].name} on {stage.node}   "
        )
    body = Group(
        Text("layers ") + cells, Text("time   ") + Text(times), Text("memory ") + Text(memory), legend
    )
    return Panel(body, title=f"Cut points ({chosen.method}): after " + (", ".join(chosen.cut_names) or "none"), expand=False)


def _interleave(spark: str, cuts: tuple[int, ...]) -> str:
    return "".join(ch + (" " if i in cuts else "") for i, ch in enumerate(spark))


def _bar(value: float, full: float, width: int = 12) -> str:
    filled = 0 if full <= 0 else min(width, round(value / full * width))
    return "█" * filled + "░" * (width - filled)


def _stage_bars(chosen: Candidate) -> Table:
    table = Table(title="Per node: busy time and memory", title_justify="left", box=None)
    for column in ("stage", "node", "busy", "compute+send ms", "memory", ""):
        table.add_column(column)
    longest = chosen.bottleneck_ms
    for stage in chosen.stages:
        colour = stage_colour(stage.index)
        memory_colour = colour if stage.fits else "red"
        table.add_row(
            f"[{colour}]P{stage.index + 1}[/]",
            stage.node,
            f"[{colour}]{_bar(stage.busy_ms, longest)}[/]",
            f"{stage.compute_ms:.0f}+{stage.send_ms:.0f} ({stage.share:.0%})",
            f"[{memory_colour}]{_bar(stage.memory_bytes, stage.memory_budget)}[/]",
            f"{stage.memory_bytes / 1e9:.2f}/{stage.memory_budget / 1e9:.2f} GB",
        )
    return table


def _replica_table(report: ReplicaReport) -> Table:
    best = report.best
    table = Table(
        title=(
            f"Replica plan (dynamic chains): {'/'.join(map(str, best.replicas))} → "
            f"{best.iteration_ms:.0f} ms per iteration; fixed chains ({report.fixed_chains} × latency "
            f"{report.chain_latency_ms:.0f} ms) → {report.fixed_iteration_ms:.0f} ms"
        ),
        title_justify="left",
    )
    for column in ("stage", "nodes", "hold ms (H_s)", "H_s / r_s"):
        table.add_column(column)
    for s, names in enumerate(best.nodes):
        mark = " ← bottleneck" if s == best.bottleneck else ""
        table.add_row(f"P{s + 1}", ", ".join(names), f"{best.hold_ms[s]:.0f}", f"{best.hold_ms[s] / len(names):.0f}{mark}")
    if best.idle:
        table.add_row("idle", ", ".join(best.idle), "", "")
    return table
