"""``python -m nodes.telemetry_main``: stream this board's telemetry as JSON lines, the form the console reads over SSH.

Standard library plus what JetPack ships only (no CLI framework): it runs on the board from the
deployed venv. One JSON object per line on stdout (see :mod:`nodes.telemetry.json_form`); with
``--agent-pid-file`` each line also carries ``"agent"``: the node agent's pid, CPU percent, resident
memory and threads (null while it is not running). The source chosen is said once on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shlex
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nodes.errors import TelemetryError
from nodes.telemetry.choose import open_best_source
from nodes.telemetry.json_form import sample_to_json
from nodes.telemetry.sample import Sample


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nodes.telemetry_main",
                                     description="Stream this machine's telemetry (jtop, tegrastats, psutil or /proc) "
                                                 "as JSON lines.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between samples (default 1).")
    parser.add_argument("--count", type=int, help="Stop after this many samples (default: until killed).")
    parser.add_argument("--tegrastats-command", default="tegrastats",
                        help="Command line that runs tegrastats, e.g. 'sudo -n tegrastats' (default tegrastats).")
    parser.add_argument("--agent-pid-file", type=Path, help="Pid file of the node agent to report on each line.")
    parser.add_argument("--agent-name", help="Node name the agent process is marked with (LITESRL_AGENT).")
    return parser


def print_json(sample: Sample, extra: dict | None = None) -> None:
    """Write ``sample`` as one compact JSON line (plus ``extra`` keys) and flush, so a reader sees it at once."""
    document = sample_to_json(sample)
    document.update(extra or {})
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def stream(samples: AsyncIterator[Sample], count: int | None, show: Callable[[Sample], None]) -> None:
    """Hand samples to ``show`` as they arrive until ``count`` have been shown or the iterator ends."""
    shown = 0
    async with contextlib.aclosing(samples):  # type: ignore[type-var]  # sources are async generators
        async for sample in samples:
            show(sample)
            shown += 1
            if count is not None and shown >= count:
                return


async def _run(args: argparse.Namespace) -> None:
    from nodes.telemetry.process import ProcessWatch

    watch = None
    if args.agent_pid_file is not None:
        marker = f"LITESRL_AGENT={args.agent_name}" if args.agent_name else None
        watch = ProcessWatch(args.agent_pid_file.expanduser(), marker)
    choice = await open_best_source(args.interval, tegrastats_command=shlex.split(args.tegrastats_command))
    sys.stderr.write(f"source: {choice.describe()}\n")
    sys.stderr.flush()
    async with choice.source as source:
        await stream(source.samples(), args.count,
                     lambda sample: print_json(sample, {"agent": watch.read()} if watch else None))


def main(argv: list[str] | None = None) -> None:
    """Parse the options and stream; a source that cannot work exits 1 with one line on stderr."""
    args = build_parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        sys.exit("error: --count must be at least 1")
    try:
        asyncio.run(_run(args))
    except TelemetryError as exc:
        sys.exit(f"error: {exc}")
    except (KeyboardInterrupt, BrokenPipeError):
        pass


if __name__ == "__main__":
    main()
