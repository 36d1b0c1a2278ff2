"""How long `litesrl profile` takes (target: <= 60 s for Lite-SRL/ResNet-18 at 64 x 64, batch 16, on 2 CPU cores).

One command: ``.venv/bin/python benchmarks/profile_speed.py``. Runs the real
``engine.cwb.profiler.profile_model`` with the CLI's defaults (5 timed runs after 2 warm-up runs
per unit, SGD with momentum, float32) on the CPU with 2 torch threads, and reports wall time
(what the operator waits) and the process's CPU time, with the load average, since the machine
is shared. Prints the result and appends it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from report import machine  # noqa: E402  (benchmarks/report.py: one description of the machine)

import torch  # noqa: E402

from engine.cwb.profiler import ProfilerConfig, profile_model  # noqa: E402
from engine.io import atomic_write_text  # noqa: E402
from engine.model import ModelConfig  # noqa: E402

TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (the target is for 2 cores)")
    parser.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ProfilerConfig(model=ModelConfig(backbone="resnet18"), batch_size=16, image_size=64, device="cpu")
    load_before = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    profile = profile_model(config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rows = [
        "| figure | value |",
        "|---|---:|",
        f"| units profiled | {len(profile.layers)} |",
        f"| wall time | {wall:.1f} s |",
        f"| process CPU time ({args.threads} threads) | {cpu:.1f} s |",
        f"| measured step (forward + backward, sum of unit medians) | {profile.total_compute_ms:.0f} ms |",
        f"| load average before the run (1 min) | {load_before:.2f} |",
    ]
    table = "\n".join(rows)
    verdict = f"Target <= {TARGET_S:g} s wall: {'met' if wall <= TARGET_S else 'NOT met'} ({wall:.1f} s)."
    print(table)
    print(verdict)
    if not args.no_record:
        record(args, config, table, verdict)


def record(args: argparse.Namespace, config: ProfilerConfig, table: str, verdict: str) -> None:
    """Append this run as a section of BENCHMARKS.md (atomically: read, add, replace)."""
    path = REPO / "BENCHMARKS.md"
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    command = "python benchmarks/profile_speed.py" + "".join(f" {a}" for a in sys.argv[1:])
    section = (
        f"\n## CWB profiler speed ({datetime.date.today().isoformat()})\n\n"
        f"- command: `{command}`\n"
        f"- machine: {machine(load=False)}\n"
        f"- Lite-SRL/ResNet-18, {config.image_size} x {config.image_size} px, batch {config.batch_size} (both views: "
        f"{2 * config.batch_size} rows), {config.optimizer}, {config.dtype}, {config.repeats} timed runs after "
        f"{config.warmup} warm-up runs per unit, {args.threads} torch threads; the machine is shared, so the "
        f"figure is indicative\n\n{table}\n\n{verdict}\n"
    )
    atomic_write_text(path, existing.rstrip("\n") + "\n" + section)


if __name__ == "__main__":
    main()
