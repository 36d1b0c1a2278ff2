"""The fastest plan and the baselines beside it, as `litesrl partition` prints them, with the command that trains it."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from engine.cwb.cost import CostModel
from engine.cwb.fastest import PlanOption, Recommendation


def train_command(option: PlanOption, accounting: str) -> str:
    """The `litesrl train` options that run ``option`` (cut, replicas, chain mode, next-hop policy)."""
    parts = ["litesrl train", f"--cut-after {','.join(option.cut_names)}" if option.cut_names else "--partitions 1",
             f"--mode {option.mode}"]
    if option.mode == "dynamic":
        parts += [f"--replicas {'/'.join(map(str, option.replicas))}", f"--policy {option.policy.replace('_', '-')}"]
    if accounting != "exact":
        parts.append(f"--memory-accounting {accounting}")
    return " ".join(parts)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


def render_recommendation(out: Console, recommendation: Recommendation, model: CostModel) -> None:
    """Side-by-side table (simulated ms per iteration, speed-up over the paper's fixed chains) and the train command."""
    best = recommendation.recommended
    reference = next((o.predicted_iteration_ms for o in recommendation.baselines
                      if o.method == "paper" and o.mode == "fixed"), None)
    table = Table(
        title=(f"Plans, simulated ({recommendation.iterations} iterations each; {recommendation.cut_sets} fitting cut "
               f"set(s) screened, {recommendation.simulated} plans simulated)"),
        title_justify="left",
    )
    for column in ("plan", "cut after", "replicas", "chains", "next hop", "ms / iteration", "vs paper fixed", "fits"):
        table.add_column(column, justify="right" if column in ("ms / iteration", "vs paper fixed") else "left")
    for option in (best, *recommendation.baselines):
        speed = ("—" if reference is None or not option.predicted_iteration_ms
                 else f"{reference / option.predicted_iteration_ms:.2f}x")
        name = "[bold green]★ recommended[/]" if option is best else option.method
        table.add_row(name, ", ".join(option.cut_names) or "—", "/".join(map(str, option.replicas)), option.mode,
                      option.policy.replace("_", " ") if option.mode == "dynamic" else "—",
                      _ms(option.predicted_iteration_ms), speed, "[green]yes[/]" if option.fits else "[red]no[/]")
    out.print(table)
    out.print(f"Train the recommended plan: [bold]{train_command(best, model.accounting)}[/]")
