"""Plan time (CWB search + replica plan + fastest plan) by rack size and board kinds (target: 48 boards of 4 kinds <= 2 s).

One command: ``.venv/bin/python benchmarks/cwb_rack.py``. Each case runs ``engine.cwb.planner.plan_partitions``
with ``recommend=True`` (what ``litesrl partition`` does) on the calibrated TX2 ResNet-18 profile with
the paper's memory accounting, 1 Gbit/s links, for racks of 6-96 boards of 1-4 kinds mixed as the
issue's rack (24 TX2 : 12 Xavier NX : 8 AGX Orin : 4 Nano). Each case is planned twice: with the
fewest partitions that fit (an Orin holds the whole model, so 1 once it is in the rack) and with the
paper's 3. The figure is the CPU time (``time.process_time``) of one run, as the machine is shared.
Writes its section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.report import write_section  # noqa: E402
from engine.cwb.nodes_spec import NodeSpec  # noqa: E402
from engine.cwb.planner import plan_partitions  # noqa: E402
from engine.cwb.profile_format import load_profile  # noqa: E402
from engine.cwb.transfer import Network  # noqa: E402

GIB = 2**30
KINDS = (  # name, share of the rack, speed vs a TX2 (assets/profiles/README.md), budget
    ("tx2", 24, 1.0, 3 * GIB),
    ("xavier-nx", 12, 384 * 1.10 / (256 * 1.30), 6 * GIB),
    ("orin", 8, 8.0, 24 * GIB),
    ("nano", 4, 0.5, 2 * GIB),
)
BOARDS = (6, 12, 24, 48, 96)
TARGET_S = 2.0


def rack(boards: int, kinds: int) -> list[NodeSpec]:
    """``boards`` boards of the first ``kinds`` kinds, in the rack's proportions (each kind at least one)."""
    chosen = KINDS[:kinds]
    weight = sum(share for _, share, _, _ in chosen)
    counts = [max(1, round(boards * share / weight)) for _, share, _, _ in chosen]
    counts[0] += boards - sum(counts)
    return [NodeSpec(f"{name}-{i + 1}", memory, speed, name)
            for (name, _, speed, memory), count in zip(chosen, counts) for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="do not write BENCHMARKS.md")
    args = parser.parse_args()
    profile = load_profile(REPO / "assets" / "profiles" / "tx2-resnet18.json")
    network = Network(bandwidth=125e6)
    load_before = os.getloadavg()[0]
    rows = ["| boards | kinds | partitions | fitting cut sets | plans simulated | recommended | ms / iteration | CPU s |",
            "|---:|---:|---|---:|---:|---|---:|---:|"]
    headline = None
    for kinds in range(1, len(KINDS) + 1):
        for boards in BOARDS:
            nodes = rack(boards, kinds)
            for partitions in (None, 3):
                start = time.process_time()
                planned = plan_partitions(profile, nodes, network, partitions=partitions, accounting="paper",
                                          recommend=True)
                seconds = time.process_time() - start
                rec = planned.recommendation
                best = rec.recommended
                label = f"{planned.partitions} ({'fewest' if partitions is None else 'paper'})"
                rows.append(f"| {boards} | {kinds} | {label} | {rec.cut_sets} | {rec.simulated} | "
                            f"{', '.join(best.cut_names) or '—'}; {'/'.join(map(str, best.replicas))} {best.mode} "
                            f"{best.policy.replace('_', ' ')} | {best.predicted_iteration_ms:.0f} | {seconds:.2f} |")
                print(rows[-1], flush=True)
                if boards == 48 and kinds == 4:
                    headline = max(headline or 0.0, seconds)
    verdict = (f"Target <= {TARGET_S:g} s for 48 boards of 4 kinds: "
               f"{'met' if headline <= TARGET_S else 'NOT met'} ({headline:.2f} s CPU, the slower of the two cases).")
    print(verdict)
    if not args.no_record:
        body = (f"- load average before the run {load_before:.2f} (shared machine: CPU time is counted, but "
                "contention still slows it)\n"
                "- profile `assets/profiles/tx2-resnet18.json` (calibrated), paper accounting, 1 Gbit/s; boards of "
                "one kind are interchangeable, so the work grows with kinds, not boards: replica plans are built "
                "per kind (water-filling for one kind, greedy moves for several) and node orders are counted per "
                "kind\n\n" + "\n".join(rows) + "\n\n" + verdict + "\n")
        write_section("CWB plan time against boards and board kinds", "cwb_rack.py", body)


if __name__ == "__main__":
    main()
