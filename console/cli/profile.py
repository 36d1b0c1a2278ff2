"""`litesrl profile`: measure the per-unit time and memory CWB partitions by (paper 3.3.1), or show a profile file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.table import Table

from console.cli.common import progress_bar
from console.errors import ConsoleError
from engine.cwb.profile_format import Profile, load_profile, save_profile
from engine.cwb.units import format_bytes
from nodes.profile_main import document, profiler_config, totals


def register(app: typer.Typer) -> None:
    """Add the `profile` command to the CLI."""
    app.command("profile")(profile_command)


def profile_command(
    out: Annotated[Path | None, typer.Option(help="Write the measured profile here (JSON, litesrl-profile v1).")] = None,
    show: Annotated[Path | None, typer.Option(help="Print the table of an existing profile file instead of measuring.")] = None,
    backbone: Annotated[Literal["resnet18", "resnet34", "resnet50"], typer.Option(help="Encoder backbone.")] = "resnet18",
    variant: Annotated[Literal["litesrl", "simsiam"], typer.Option(help="litesrl (paper heads) or simsiam heads.")] = "litesrl",
    stem: Annotated[Literal["imagenet", "compact"], typer.Option(
        help="imagenet (7x7/2 + max-pool) or compact (3x3/1).")] = "imagenet",
    batch_size: Annotated[int, typer.Option(help="Images per mini-batch; both views run, 2x rows (paper: 64).")] = 64,
    image_size: Annotated[int, typer.Option(help="Side of each view in pixels (paper: 224).")] = 224,
    modality: Annotated[Literal["optical", "sar"], typer.Option(help="optical (3 channels) or sar (1 channel).")] = "optical",
    optimizer: Annotated[
        Literal["sgd", "adam", "sgd-nomomentum"], typer.Option(help="sgd (momentum 0.9, paper), adam, or sgd-nomomentum.")
    ] = "sgd",
    dtype: Annotated[Literal["float32", "float16"], typer.Option(help="Tensor dtype (paper: float32).")] = "float32",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    repeats: Annotated[int, typer.Option(help="Timed runs per unit; the median is kept.")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed runs per unit before timing.")] = 2,
    clock: Annotated[
        Literal["wall", "process"], typer.Option(help="wall, or process (CPU time; steadier on a shared machine, use 1 thread).")
    ] = "wall",
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: all cores).")] = None,
    data: Annotated[Path | None, typer.Option(help="Image folder to time stage 1's data work on "
                                                   "(decode + both views; default: synthetic scenes).")] = None,
    data_repeats: Annotated[int, typer.Option(min=0, help="Mini-batches of data work timed "
                                                          "(median kept; 0: skip, data_ms 0).")] = 2,
    memory_accounting: Annotated[str, typer.Option(
        "--memory-accounting", help="Memory column shown: exact (what training keeps) or paper (5.1: "
                                    "every layer's input and output + weights, gradients, momentum).")] = "exact",
    as_json: Annotated[bool, typer.Option("--json", help="Print the profile and its totals as JSON on stdout.")] = False,
) -> None:
    """Time forward and backward of every cut unit and count its memory; write the profile `partition` reads."""
    from engine.cwb.cost import ACCOUNTINGS, check_choice

    check_choice("memory accounting", memory_accounting, ACCOUNTINGS)
    if show is not None:
        if out is not None:
            raise ConsoleError("give --show PATH to print a profile or --out PATH to measure one, not both")
        profile, path = load_profile(show), show
    else:
        if out is None:
            raise ConsoleError("give --out PATH to write the measured profile (or --show PATH to print one)")
        profile, path = _measure(backbone, variant, stem, batch_size, image_size, modality, optimizer, dtype,
                                 device, repeats, warmup, clock, threads, data, data_repeats), out
        save_profile(profile, out)
    if as_json:
        sys.stdout.write(json.dumps(document(profile, path), indent=2) + "\n")
        return
    console = Console(highlight=False)
    console.print(profile_table(profile, memory_accounting))
    console.print(_memory_line(profile))
    if show is None:
        console.print(f"wrote {out}")


def _measure(backbone, variant, stem, batch_size, image_size, modality, optimizer, dtype, device, repeats, warmup, clock,
             threads, data, data_repeats):
    """Run the profiler with a progress bar (torch is imported here, not at CLI start-up)."""
    from engine.cwb.profiler import profile_model

    # Settings are checked before the progress bar takes the terminal, so an error is one clean line.
    config = profiler_config(backbone, variant, stem, batch_size, image_size, modality, optimizer, dtype, device,
                             repeats, warmup, clock, threads)
    with progress_bar(transient=True) as progress:
        task = progress.add_task("profiling", total=None, info="building the model")

        def on_unit(index: int, total: int, layer) -> None:
            progress.update(task, total=total, completed=index + 1,
                            info=f"{layer.name}: {layer.forward_ms:.1f} + {layer.backward_ms:.1f} ms")

        profile = profile_model(config, on_unit)
        if data_repeats:
            from dataclasses import replace

            from engine.cwb.data_time import measure_data_ms

            progress.update(task, info="timing stage 1's data work (decode + both views)")
            profile = replace(profile, data_ms=measure_data_ms(batch_size, image_size, modality, folder=data,
                                                                 repeats=data_repeats, seed=0))
        return profile


def profile_table(profile: Profile, accounting: str = "exact") -> Table:
    """One row per unit: time, memory (saved activations, or the paper's count) and its share of the compute."""
    s = profile.settings
    table = Table(
        title=(f"{s.model}/{s.backbone} · batch {s.batch_size} · {s.image_size} px · {s.channels} ch · {s.optimizer} · "
               f"{s.dtype} · {s.device} · median of {s.repeats}"),
        title_justify="left",
    )
    paper = accounting == "paper" and profile.has_paper_bytes
    memory_column = "paper count" if paper else "saved"
    for column in ("unit", "kind", "shape", "fwd ms", "bwd ms", "params", memory_column, "output", "time"):
        table.add_column(column, justify="left" if column in ("unit", "kind", "shape") else "right", no_wrap=True)
    total_ms = profile.total_compute_ms
    for layer in profile.layers:
        share = layer.compute_ms / total_ms if total_ms > 0 else 0.0
        table.add_row(
            layer.name, layer.kind or "", "×".join(map(str, layer.shape)) if layer.shape else "",
            f"{layer.forward_ms:.2f}", f"{layer.backward_ms:.2f}", format_bytes(layer.param_bytes),
            format_bytes(layer.paper_bytes if paper else layer.activation_bytes), format_bytes(layer.output_bytes),
            f"{share:.1%}",
        )
    sums = totals(profile)
    table.add_section()
    table.add_row(
        "total", "", "", f"{sums['forward_ms']:.2f}", f"{sums['backward_ms']:.2f}",
        format_bytes(sums["param_bytes"]), format_bytes(sums["paper_bytes"] if paper else sums["activation_bytes"]),
        "", "100.0%",
    )
    return table


def _memory_line(profile: Profile) -> str:
    sums = totals(profile)
    return (
        f"[bold]Time[/] {sums['compute_ms']:.1f} ms per mini-batch (forward {sums['forward_ms']:.1f} + backward "
        f"{sums['backward_ms']:.1f})\n[bold]Memory[/] {format_bytes(sums['state_bytes'])} = params "
        f"{format_bytes(sums['param_bytes'])} + grads {format_bytes(sums['grad_bytes'])} + optimizer "
        f"{format_bytes(sums['optimizer_bytes'])} + activations {format_bytes(sums['activation_bytes'])}"
        + (f"; {format_bytes(sums['paper_bytes'])} as the paper counts (every layer's input and output)"
           if sums["paper_bytes"] is not None else "")
        + (f"\n[bold]Data[/] {sums['data_ms']:.1f} ms per mini-batch to decode and augment (stage 1)" if sums["data_ms"] else "")
    )
