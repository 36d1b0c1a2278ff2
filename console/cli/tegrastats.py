"""`litesrl tegrastats`: a captured tegrastats log as JSON lines or a summary, or this machine's live telemetry.

On a board the console streams telemetry with ``python -m nodes.telemetry_main`` instead, which needs
no CLI framework; both print the same JSON lines through :func:`nodes.telemetry_main.print_json`.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from console.errors import ConsoleError
from nodes.telemetry.choose import open_best_source
from nodes.telemetry.sample import Sample
from nodes.telemetry.tegrastats import parse_tegrastats_line
from nodes.telemetry_main import print_json, stream


def register(app: typer.Typer) -> None:
    """Add the `tegrastats` command to the CLI."""
    app.command("tegrastats")(tegrastats_command)


def tegrastats_command(
    parse: Annotated[
        Path | None,
        typer.Option("--parse", metavar="LOGFILE", help="Captured tegrastats log to convert (one sample per line)."),
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Stream this machine's telemetry from the best source.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON sample per line instead of a table.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between samples with --local.")] = 1.0,
    count: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many samples with --local (default: until Ctrl-C).")
    ] = None,
    tegrastats_cmd: Annotated[
        str,
        typer.Option(
            "--tegrastats-command", help="Command line that runs tegrastats with --local, e.g. 'sudo -n tegrastats'."
        ),
    ] = "tegrastats",
) -> None:
    """Parse a tegrastats log (--parse LOGFILE) or stream this machine's telemetry (--local)."""
    if (parse is None) == (not local):
        raise ConsoleError("give exactly one of --parse LOGFILE or --local")
    out = Console(highlight=False)
    if parse is not None:
        samples = _read_log(parse)
        if as_json:
            for sample in samples:
                print_json(sample)
        else:
            _print_summary(out, parse, samples)
        return
    command = shlex.split(tegrastats_cmd)
    asyncio.run(_stream_local(interval, count, as_json, command, out))


def _read_log(path: Path) -> Iterator[Sample]:
    """One Sample per non-blank, non-comment line; a file that cannot be read is a ConsoleError."""
    if not path.exists():
        raise ConsoleError(f"tegrastats log {path} does not exist")
    if not path.is_file():
        raise ConsoleError(f"tegrastats log {path} is not a file")
    try:
        handle = path.open(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ConsoleError(f"cannot read tegrastats log {path}: {exc.strerror or exc}") from None
    return _samples_from(handle)


def _samples_from(handle) -> Iterator[Sample]:
    with handle:
        for line in handle:
            text = line.strip()
            if text and not text.startswith("#"):
                yield parse_tegrastats_line(text)


async def _stream_local(interval: float, count: int | None, as_json: bool, command: list[str], out: Console) -> None:
    choice = await open_best_source(interval, tegrastats_command=command)
    # The choice goes to stderr so that --json output stays pure JSON lines.
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"source: {choice.describe()}", markup=False)
    async with choice.source as source:
        show = print_json if as_json else lambda sample: out.print(_one_line(sample), soft_wrap=True, markup=False)
        await stream(source.samples(), count, show)


def _one_line(sample: Sample) -> str:
    when = sample.time.strftime("%H:%M:%S") if sample.time else "--:--:--"
    ram = f"{sample.ram.used_mb}/{sample.ram.total_mb} MB" if sample.ram else "-"
    online = sum(1 for core in sample.cpus if core.online)
    return (
        f"{when}  cpu {_pct(sample.cpu_percent)} ({online}/{len(sample.cpus)} cores)  gpu {_pct(sample.gpu_percent)}"
        f"  ram {ram} ({_pct(sample.ram_percent)})  max {_num(sample.max_temp_c, ' C')}"
        f"  power {_num(sample.total_power_mw, ' mW')}"
    )


def _pct(value: float | None) -> str:
    return f"{value:.1f}%" if value is not None else "-"


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}{unit}" if isinstance(value, float) else f"{value}{unit}"


class _Stats:
    """Running min/mean/max of one figure over the samples that report it."""

    def __init__(self) -> None:
        self.n, self.total, self.low, self.high = 0, 0.0, float("inf"), float("-inf")

    def add(self, value: float | None) -> None:
        if value is not None:
            self.n += 1
            self.total += value
            self.low, self.high = min(self.low, value), max(self.high, value)

    def row(self, label: str) -> tuple[str, ...]:
        if not self.n:
            return (label, "-", "-", "-", "0")
        return (label, f"{self.low:.1f}", f"{self.total / self.n:.1f}", f"{self.high:.1f}", str(self.n))


def _print_summary(out: Console, path: Path, samples: Iterator[Sample]) -> None:
    figures = {
        "CPU %": lambda s: s.cpu_percent,
        "GPU %": lambda s: s.gpu_percent,
        "RAM %": lambda s: s.ram_percent,
        "EMC %": lambda s: s.emc.load_pct if s.emc else None,
        "max temp C": lambda s: s.max_temp_c,
        "power mW": lambda s: s.total_power_mw,
    }
    stats = {label: _Stats() for label in figures}
    count, unknown, power_from, cores, first, last = 0, 0, set(), set(), None, None
    for sample in samples:
        count += 1
        unknown += len(sample.unknown)
        cores.add(len(sample.cpus))
        if sample.power_from:
            power_from.add(sample.power_from)
        if sample.time:
            first, last = first or sample.time, sample.time
        for label, pick in figures.items():
            stats[label].add(pick(sample))
    table = Table(title=f"{path.name}: {count} samples")
    for column in ("figure", "min", "mean", "max", "samples"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for label in figures:
        table.add_row(*stats[label].row(label))
    out.print(table)
    span = f"{first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S}" if first else "no date prefix"
    out.print(f"time: {span}")
    out.print(f"cpu cores: {', '.join(str(c) for c in sorted(cores)) or '-'}")
    out.print(f"power from: {', '.join(sorted(power_from)) or 'no rails'}")
    out.print(f"unrecognised tokens: {unknown}")
