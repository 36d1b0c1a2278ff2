"""CPU cost of node telemetry against the console budget: psutil sampling, JSON decoding, tegrastats parsing.

One command: ``.venv/bin/python benchmarks/telemetry.py``. Budget: six nodes at 1 Hz may use at most
5 % of one core, i.e. 8.3 ms of CPU per sample. The emulated cluster runs the six node agents and
the console on one machine, so a sample costs its psutil reading and JSON encoding (measured as CPU
time, `time.process_time`, while the real `PsutilSource.samples()` loop streams) plus the console's
JSON decoding into a Sample. The decode and parse figures use the longest real capture line (AGX
Orin, 12 cores, 10 engines). Prints the figures and appends them to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from report import machine  # noqa: E402  (benchmarks/report.py: one description of the machine)

from engine.io import atomic_write_text  # noqa: E402
from nodes.telemetry.json_form import sample_from_json, sample_to_json
from nodes.telemetry.psutil_source import PsutilSource  # noqa: E402
from nodes.telemetry.tegrastats import parse_tegrastats_line  # noqa: E402

NODES = 6
RATE_HZ = 1.0
BUDGET_FRACTION = 0.05
ORIN_LINE = (
    "07-21-2025 16:33:42 RAM 17953/62841MB (lfb 9x4MB) SWAP 0/31420MB (cached 0MB) "
    "CPU [7%@1728,31%@1036,7%@1036,42%@1036,4%@1420,5%@729,6%@729,1%@729,off,off,off,off] "
    "EMC_FREQ 12%@204 GR3D_FREQ 39%@[305,0] NVENC off NVDEC off NVJPG off NVJPG1 off VIC off OFA off "
    "NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cpu@43.906C soc2@40.406C soc0@41.187C gpu@40.093C "
    "tj@43.906C soc1@40.437C VDD_GPU_SOC 2798mW/2798mW VDD_CPU_CV 799mW/799mW VIN_SYS_5V0 3315mW/3315mW"
)


async def psutil_cost(samples: int, interval: float) -> float:
    """CPU seconds per streamed psutil sample, JSON encoding included."""
    source = await PsutilSource.open(interval)
    taken = 0
    start = time.process_time()
    async with source:
        async for sample in source.samples():
            json.dumps(sample_to_json(sample))
            taken += 1
            if taken == samples:
                break
    return (time.process_time() - start) / taken


def decode_cost(lines: int) -> float:
    """CPU seconds for the console to turn one JSON line of the AGX Orin sample back into a Sample."""
    text = json.dumps(sample_to_json(parse_tegrastats_line(ORIN_LINE)))
    start = time.process_time()
    for _ in range(lines):
        sample_from_json(json.loads(text))
    return (time.process_time() - start) / lines


def parse_cost(lines: int) -> float:
    """CPU seconds to parse the AGX Orin line once."""
    start = time.process_time()
    for _ in range(lines):
        parse_tegrastats_line(ORIN_LINE)
    return (time.process_time() - start) / lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="psutil samples to stream")
    parser.add_argument("--interval", type=float, default=0.02, help="seconds between psutil samples")
    parser.add_argument("--lines", type=int, default=5000, help="tegrastats lines to parse")
    parser.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()

    per_sample = asyncio.run(psutil_cost(args.samples, args.interval))
    per_decode = decode_cost(args.lines)
    per_line = parse_cost(args.lines)
    share = (per_sample + per_decode) * NODES * RATE_HZ
    verdict = (
        f"Budget <= {BUDGET_FRACTION:.0%} of one core for {NODES} nodes at {RATE_HZ:g} Hz: "
        f"{'met' if share <= BUDGET_FRACTION else 'NOT met'} ({100 * share:.2f} % of one core, sampling + decoding)."
    )
    lines = [
        "| figure | CPU per item | items/s on one core |",
        "|---|---:|---:|",
        f"| psutil sample, streamed + JSON-encoded | {per_sample * 1e3:.3f} ms | {1 / per_sample:,.0f} |",
        f"| console JSON decode to Sample, AGX Orin line | {per_decode * 1e3:.3f} ms | {1 / per_decode:,.0f} |",
        f"| parse_tegrastats_line, AGX Orin line | {per_line * 1e3:.3f} ms | {1 / per_line:,.0f} |",
    ]
    table = "\n".join(lines)
    print(table)
    print(verdict)
    if not args.no_record:
        record(args, table, verdict)


def record(args: argparse.Namespace, table: str, verdict: str) -> None:
    """Append this run as a section of BENCHMARKS.md (atomically: read, add, replace)."""
    path = REPO / "BENCHMARKS.md"
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    command = "python benchmarks/telemetry.py" + "".join(f" {a}" for a in sys.argv[1:])
    section = (
        f"\n## Node telemetry CPU cost ({datetime.date.today().isoformat()})\n\n"
        f"- command: `{command}`\n"
        f"- machine: {machine(load=False)}\n"
        f"- {args.samples} psutil samples streamed every {args.interval:g} s; {args.lines} decodes and parses; CPU time "
        f"from time.process_time (the machine is shared, so wall-clock load from others does not count)\n\n"
        f"{table}\n\n{verdict}\n"
    )
    atomic_write_text(path, existing.rstrip("\n") + "\n" + section)


if __name__ == "__main__":
    main()
