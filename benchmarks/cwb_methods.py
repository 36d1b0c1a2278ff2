"""Where CWB, PipeDream and torchgpipe cut Lite-SRL/ResNet-18 on the TX2-like profile, and what each predicts.

One command: ``.venv/bin/python benchmarks/cwb_methods.py``. Reads the shipped reference profile
``assets/profiles/tx2-resnet18.json`` (batch 64, 224 px, ~3.1 s of compute per mini-batch on one
TX2), six identical nodes with 3 GB each and a 1 Gbit/s link, and for each partition count runs
the real ``engine.cwb`` API: the exact CWB search (highest E), PipeDream's DP and torchgpipe's
block partition, all scored by the same cost model (``engine.cwb.cost``), then the dynamic-chain
replica plan over the six nodes for each method's cut (``engine.cwb.replicas``). Prints the
tables and appends them to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assets import asset_path  # noqa: E402
from benchmarks.report import write_section  # noqa: E402
from engine.cwb import baselines  # noqa: E402
from engine.cwb.cost import Candidate, CostModel  # noqa: E402
from engine.cwb.nodes_spec import identical_nodes  # noqa: E402
from engine.cwb.planner import plan_partitions  # noqa: E402
from engine.cwb.profile_format import load_profile  # noqa: E402
from engine.cwb.replicas import replicas_for  # noqa: E402
from engine.cwb.search import search, smallest_partitions  # noqa: E402
from engine.cwb.transfer import Network  # noqa: E402
from engine.cwb.units import format_bandwidth, format_bytes, parse_bandwidth, parse_size  # noqa: E402

PROFILE = "profiles/tx2-resnet18.json"
NODES = 6
MEMORY = "3GB"
BANDWIDTH = "1Gbit"
PARTITIONS = (2, 3)  # 3 is the paper's split (section 6.1); 2 for contrast


def method_rows(model: CostModel, nodes, partitions: int) -> tuple[list[str], dict[str, Candidate]]:
    """One table row per method for ``partitions`` stages, and each method's candidate."""
    chosen = {
        "CWB (highest E)": search(model, nodes, partitions).best,
        "PipeDream DP": baselines.pipedream(model, nodes, partitions),
        "torchgpipe block partition": baselines.gpipe(model, nodes, partitions),
    }
    rows = []
    for name, c in chosen.items():
        plan = replicas_for(model, c, nodes) if c.fits else None
        dynamic = (f"{'/'.join(map(str, plan.best.replicas))}: {plan.best.iteration_ms:.0f}" if plan else "does not fit")
        fixed = f"{plan.fixed_chains} x: {plan.fixed_iteration_ms:.0f}" if plan else ""
        index = c.utilisation_index
        rows.append(
            f"| {partitions} | {name} | {', '.join(c.cut_names)} | "
            f"{' / '.join(f'{s.compute_ms:.0f}+{s.send_ms:.0f}' for s in c.stages)} | "
            f"{' / '.join(f'{s.memory_bytes / 1e9:.2f}' for s in c.stages)} | {c.minibatch_ms:.0f} | "
            f"{c.bottleneck_ms:.0f} | {'inf' if math.isinf(index) else f'{index:.2f}'} | {dynamic} | {fixed} |"
        )
    return rows, chosen


def replica_table(model: CostModel, candidate: Candidate, nodes) -> list[str]:
    """Every stage of the best dynamic-chain plan for ``candidate``: nodes, hold time, hold / replicas."""
    report = replicas_for(model, candidate, nodes)
    best = report.best
    rows = ["| stage | layers | nodes | hold ms (H_s) | H_s / r_s |", "|---|---|---|---:|---:|"]
    names = model.profile.names
    for s, stage in enumerate(candidate.stages):
        mark = " (bottleneck)" if s == best.bottleneck else ""
        rows.append(
            f"| P{s + 1} | {names[stage.first_layer]} .. {names[stage.last_layer]} | {', '.join(best.nodes[s])} | "
            f"{best.hold_ms[s]:.0f} | {best.hold_ms[s] / len(best.nodes[s]):.0f}{mark} |"
        )
    rows.append("")
    rows.append(
        f"Dynamic chains {'/'.join(map(str, best.replicas))}: {best.iteration_ms:.0f} ms per iteration; fixed chains "
        f"({report.fixed_chains} x latency {report.chain_latency_ms:.0f} ms): {report.fixed_iteration_ms:.0f} ms "
        f"({1 - best.iteration_ms / report.fixed_iteration_ms:.1%} less). Paper, Tables 5-6: 3572 -> 2750 ms (23.0 %)."
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()
    profile = load_profile(asset_path(PROFILE))
    network = Network(bandwidth=parse_bandwidth(BANDWIDTH))
    nodes = identical_nodes(NODES, parse_size(MEMORY))
    model = CostModel(profile, network)
    fewest = smallest_partitions(model, nodes)
    header = [
        "| partitions | method | cut after | per node: compute+send ms | memory GB per node | T ms (eq. 8) | "
        "slowest node ms | E (eq. 9) | 6-node dynamic plan: ms / iteration | fixed chains: ms / iteration |",
        "|---:|---|---|---|---|---:|---:|---:|---|---|",
    ]
    rows, chosen = [], {}
    for partitions in PARTITIONS:
        more, chosen[partitions] = method_rows(model, nodes, partitions)
        rows += more
    intro = (
        f"Profile `assets/{PROFILE}`: {profile.settings.model}/{profile.settings.backbone}, batch "
        f"{profile.settings.batch_size}, {profile.settings.image_size} px, {profile.total_compute_ms:.0f} ms of compute "
        f"per mini-batch on one TX2, {format_bytes(profile.total_state_bytes)} of training state. Cluster: {NODES} x "
        f"{MEMORY}, {format_bandwidth(network.bandwidth)}, no latency. On these memory counts the fewest partitions "
        f"that fit are {fewest} (the paper, counting every layer's input and output, needed 3: see "
        "assets/profiles/README.md), so the paper's 3 and, for contrast, 2 partitions are shown."
    )
    replicas = replica_table(model, chosen[3]["CWB (highest E)"], nodes)
    fastest = recommendation_table(profile, network)
    text = "\n".join([intro, "", *header, *rows, "", "Replica plan for CWB's 3-partition cut over six nodes:", "", *replicas,
                      "", "The fastest plan `litesrl partition` recommends (cut x replicas x chain mode x next-hop policy, "
                      "each scored by the simulator, no communication overlap) beside the baselines, each with its best "
                      "replica plan:", "", *fastest])
    print(text)
    if not args.no_record:
        record(text)


def recommendation_table(profile, network) -> list[str]:
    """The fastest simulated plan and the baselines (``litesrl partition``), with both memory accountings."""
    lines = ["| accounting, budget | plan | cut after | replicas | chains | next hop | simulated ms / iteration | "
             "vs paper fixed | fits |", "|---|---|---|---|---|---|---:|---:|---|"]
    for accounting, memory in (("paper", "3GiB"), ("exact", MEMORY)):
        planned = plan_partitions(profile, identical_nodes(NODES, parse_size(memory)), network, partitions=3,
                                  accounting=accounting, recommend=True)
        rec = planned.recommendation
        reference = next(o.predicted_iteration_ms for o in rec.baselines if o.method == "paper" and o.mode == "fixed")
        for option in (rec.recommended, *rec.baselines):
            ms = option.predicted_iteration_ms
            lines.append(f"| {accounting}, {memory} | {option.method} | {', '.join(option.cut_names)} | "
                         f"{'/'.join(map(str, option.replicas))} | {option.mode} | "
                         f"{option.policy.replace('_', ' ') if option.mode == 'dynamic' else '—'} | "
                         f"{'—' if ms is None else f'{ms:.0f}'} | {'—' if not ms else f'{reference / ms:.2f}x'} | "
                         f"{'yes' if option.fits else 'no'} |")
    return lines


def record(body: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md."""
    write_section("CWB vs PipeDream vs torchgpipe on the TX2-like Lite-SRL/ResNet-18 profile", "cwb_methods.py",
                  "- the figures are predictions (cost model, simulator), not timings of this machine\n\n" + body)


if __name__ == "__main__":
    main()
