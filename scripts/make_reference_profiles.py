"""Reference CWB profiles (assets/profiles/): measured on this CPU, scaled to the paper's batch, calibrated to its Tables 5-7.

One command: ``.venv/bin/python scripts/make_reference_profiles.py`` (a few minutes on one core;
``--reuse`` redoes the derivation from the kept measurements in seconds). It writes
``assets/profiles/{cpu,tx2}-resnet{18,34,50}.json``, ``{xavier-nx,orin}-resnet18.json``, the raw
measurements in ``assets/profiles/measured/`` and ``assets/profiles/README.md``, which records
every number of the derivation:

1. **Measure** Lite-SRL (SGD with momentum, float32) with ``engine.cwb.profiler`` on one CPU
   thread at the paper's 224 px and batch 4, timing with the process clock so the other programs
   on this shared machine do not inflate the figures; each backbone is measured in ``--rounds``
   interleaved rounds and each unit keeps its fastest median (interference only ever adds time).
   Batch 4 is the largest that keeps every tensor below glibc's 32 MiB mmap threshold: a larger
   CPU tensor is mapped and page-faulted afresh on every call (the README measures that cost),
   which a GPU's caching allocator never pays.
2. **Scale time** of each unit to the paper's batch by the ratio of its input elements, i.e. by
   the batch ratio (16, or 8 for ResNet-50): the feature maps are already the paper's size. The
   README checks the rule by predicting batch 4 from batch 2. **Count bytes exactly** at 224 px x
   the paper's batch on the ``meta`` device, both ways (exact and the paper's 5.1 count). Time the
   stage-1 data work (decode + both views) on synthetic scenes. These are ``cpu-*.json``.
3. **Map the paper's cut onto our units.** With the paper's accounting and its 3 GB per TX2 (its
   "MB" are MiB, so 3 GiB), only two 3-way cuts of ResNet-18 fit, both with the second cut after
   ``layer1_1``; the paper's P1 {p1, p2} is therefore our stem (conv1 .. maxpool), P2 {p3..p7}
   ``layer1`` and P3 {p8..p28} the rest.
4. **Calibrate time per paper partition**: the units of each group get one factor so that the
   paper's cut gives Table 5's per-node compute (means of its two nodes: 1037 / 1142 / 922 ms).
   The same three factors (stem, layer1, rest) are applied to ResNet-34 and ResNet-50.
5. **Calibrate the paper's count** of each backbone to the paper's published total (7599.7 /
   10185.9 / 13039.3 MiB; one factor per backbone, 0.998 for ResNet-18). The exact count is kept.
6. **Other boards** (assumption, not measured): TX2 times divided by the ratio of peak FP32
   CUDA-core throughput (cores x maximum GPU clock from NVIDIA's module data sheets).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.cwb.data_time import measure_data_ms  # noqa: E402
from engine.cwb.profile_format import Profile, load_profile, save_profile  # noqa: E402
from engine.cwb.profiler import ProfilerConfig, measure_memory, profile_model  # noqa: E402
from engine.io import atomic_write_text  # noqa: E402
from engine.model import ModelConfig  # noqa: E402

OUT = REPO / "assets" / "profiles"
MEASURED = OUT / "measured"
IMAGE = 224
TARGET_BATCH = {"resnet18": 64, "resnet34": 64, "resnet50": 32}  # Table 7 note: batch 32 for ResNet-50
MEASURE_BATCH = 4  # at 224 px: ResNet-18's stem output is then 25.7 MB, below the 32 MiB threshold
CHECK_BATCH = 2  # the linearity check predicts ResNet-18 at MEASURE_BATCH from this batch
TABLE5_NODE_MS = ((1035, 1039), (1145, 1139), (921, 923))  # partitions 1..3, two nodes each
PAPER_POINTS = ("{p1, p2}", "{p3..p7}", "{p8..p28}")  # section 6.1: the paper's three partitions
GROUPS = ("stem (conv1 .. maxpool)", "layer1", "layer2 .. head")  # ours, per the mapping (docstring step 3)
PAPER_BUDGET = 3 * 2**30  # the paper's 3 GB per TX2, in its units (its MB match ours as MiB)
DATA_BATCH = 16  # images timed for the data work; it grows linearly with the images
PAPER_MEMORY_MB = {"resnet18": 7599.7, "resnet34": 10185.9, "resnet50": 13039.3}  # section 6.1, Table 7
PAPER_NODES = {"resnet18": 3, "resnet34": 4, "resnet50": 5}  # Figure 15: nodes one mini-batch needs
TABLE7_MS = {"resnet18": (3572, 2750), "resnet34": (4895, 3984), "resnet50": (6473, 5962)}  # baseline, dynamic
TX2 = ("tx2", "Jetson TX2", 256, 1.30)
BOARDS = (("xavier-nx", "Jetson Xavier NX", 384, 1.10), ("orin", "Jetson AGX Orin 64GB", 2048, 1.30))  # cores, GHz


def paper_total_ms() -> float:
    """Table 5: mean node time of each partition, summed = one mini-batch's compute on one TX2."""
    return sum(sum(pair) / len(pair) for pair in TABLE5_NODE_MS)


def config(backbone: str, batch: int, args) -> ProfilerConfig:
    return ProfilerConfig(model=ModelConfig(backbone=backbone), batch_size=batch, image_size=IMAGE, optimizer="sgd",
                          device="cpu", repeats=args.repeats, warmup=args.warmup, clock="process")


def measure_rounds(configs: dict[str, ProfilerConfig], rounds: int, reuse: bool) -> dict[str, Profile]:
    """Each config measured ``rounds`` times, interleaved; per unit the fastest forward and backward medians.

    The result is kept in ``assets/profiles/measured/`` (raw CPU times at the measured batch): real
    measurements, reread with ``--reuse`` so the derivation can be redone without the minutes of timing.
    """
    paths = {key: MEASURED / f"cpu-{cfg.model.backbone}-batch{cfg.batch_size}.json" for key, cfg in configs.items()}
    if reuse:
        return {key: load_profile(path) for key, path in paths.items()}
    runs: dict[str, list[Profile]] = {key: [] for key in configs}
    for number in range(1, rounds + 1):
        for key, cfg in configs.items():
            print(f"round {number}/{rounds}: {cfg.model.backbone} at {IMAGE} px, batch {cfg.batch_size} ...", flush=True)
            runs[key].append(profile_model(cfg))
    fastest = {}
    for key, profiles in runs.items():
        layers = tuple(
            replace(group[0], forward_ms=min(p.forward_ms for p in group), backward_ms=min(p.backward_ms for p in group))
            for group in zip(*(p.layers for p in profiles))
        )
        fastest[key] = Profile(settings=profiles[0].settings, layers=layers)
        save_profile(fastest[key], paths[key])
    return fastest


def group_of(name: str) -> int:
    """The paper partition a unit falls in under the mapping: 0 stem, 1 layer1, 2 the rest."""
    if name in ("conv1", "bn1", "relu", "maxpool"):
        return 0
    return 1 if name.startswith("layer1_") else 2


def group_ms(profile: Profile) -> list[float]:
    """Forward + backward per group (stem, layer1, rest)."""
    totals = [0.0, 0.0, 0.0]
    for layer in profile.layers:
        totals[group_of(layer.name)] += layer.compute_ms
    return totals


def calibrate(cpu: Profile, factors: list[float], paper_mib: float, device: str) -> Profile:
    """``cpu`` with each group's times x its factor and the paper count scaled to the paper's total."""
    memory = paper_mib * 2**20 / cpu.total_paper_bytes
    layers = tuple(
        replace(layer, forward_ms=layer.forward_ms * factors[group_of(layer.name)],
                backward_ms=layer.backward_ms * factors[group_of(layer.name)],
                paper_bytes=round(layer.paper_bytes * memory))
        for layer in cpu.layers
    )
    return Profile(settings=replace(cpu.settings, device=device), layers=layers, data_ms=0.0)


def scale(measured: Profile, source: ProfilerConfig, target: ProfilerConfig, factor: float) -> Profile:
    """``measured`` at ``target``'s size: each time x its unit's input-element ratio x ``factor``; exact bytes."""
    small = measure_memory(source, device="meta")
    large = measure_memory(target, device="meta")
    layers = []
    for layer, a, b in zip(measured.layers, small, large):
        ratio = b.input_numel / a.input_numel * factor
        layers.append(replace(
            layer, forward_ms=layer.forward_ms * ratio, backward_ms=layer.backward_ms * ratio,
            param_bytes=b.param_bytes, grad_bytes=b.grad_bytes, optimizer_bytes=b.optimizer_bytes,
            activation_bytes=b.activation_bytes, output_bytes=b.output_bytes, shape=b.shape, paper_bytes=b.paper_bytes,
        ))
    settings = replace(measured.settings, batch_size=target.batch_size, image_size=target.image_size)
    return Profile(settings=settings, layers=tuple(layers))


def errors(predicted: Profile, measured: Profile, units: list[int]) -> tuple[float, float]:
    """(total time error, time-weighted mean per-unit error) of a prediction over the ``units`` given."""
    pairs = [(predicted.layers[i].compute_ms, measured.layers[i].compute_ms) for i in units]
    total = sum(m for _, m in pairs)
    return sum(p for p, _ in pairs) / total - 1.0, sum(abs(p - m) for p, m in pairs) / total


def page_fault_cost() -> float:
    """Cost per byte of a ReLU whose output is above glibc's 32 MiB mmap threshold, over one below it."""
    per_mib = []
    for mib in (16, 64):
        x = torch.randn(mib * 2**20 // 4)
        times = []
        for _ in range(7):
            start = time.process_time()
            torch.relu(x)
            times.append(time.process_time() - start)
        per_mib.append(sorted(times)[3] / mib)
    return per_mib[1] / per_mib[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per unit (median kept)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per unit")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved measurements per backbone (fastest kept)")
    parser.add_argument("--reuse", action="store_true", help="reread assets/profiles/measured/ instead of measuring")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the process clock equals wall time on an idle core only with one thread
    sources = {backbone: config(backbone, MEASURE_BATCH, args) for backbone in TARGET_BATCH}
    targets = {backbone: config(backbone, batch, args) for backbone, batch in TARGET_BATCH.items()}
    check = config("resnet18", CHECK_BATCH, args)
    measured = measure_rounds({**sources, "check": check}, args.rounds, args.reuse)
    data_ms = measure_data_ms(DATA_BATCH, IMAGE, "optical", repeats=3) / DATA_BATCH
    cpu, tx2, written = {}, {}, []
    for backbone, target in targets.items():
        scaled = scale(measured[backbone], sources[backbone], target, 1.0)
        label = f"{scaled.settings.device}, scaled to batch {target.batch_size} (assets/profiles/README.md)"
        cpu[backbone] = Profile(replace(scaled.settings, device=label), scaled.layers, data_ms * target.batch_size)
        written.append(save_profile(cpu[backbone], OUT / f"cpu-{backbone}.json"))
    factors = [sum(pair) / len(pair) / ms for pair, ms in zip(TABLE5_NODE_MS, group_ms(cpu["resnet18"]))]
    device = (f"{TX2[1]} (derived: CPU x per-partition factors {'/'.join(f'{f:.3f}' for f in factors)}, "
              "see assets/profiles/README.md)")
    for backbone in TARGET_BATCH:
        tx2[backbone] = calibrate(cpu[backbone], factors, PAPER_MEMORY_MB[backbone], device)
        written.append(save_profile(tx2[backbone], OUT / f"{TX2[0]}-{backbone}.json"))
    speeds = {}
    for slug, board, cores, ghz in BOARDS:
        speeds[slug] = cores * ghz / (TX2[2] * TX2[3])
        label = f"{board} (assumed {speeds[slug]:.2f}x a TX2 from peak FP32 throughput, see assets/profiles/README.md)"
        written.append(save_profile(tx2["resnet18"].scaled(1.0 / speeds[slug], device=label), OUT / f"{slug}-resnet18.json"))
    linearity = check_linearity(measured["check"], check, measured["resnet18"], sources["resnet18"])
    from reference_readme import render  # scripts/, next to this file; it reads this module's constants

    readme = render(args, measured, cpu, tx2, factors, data_ms, speeds, linearity, page_fault_cost())
    atomic_write_text(OUT / "README.md", readme)
    print(readme)
    print("wrote", ", ".join(str(path.relative_to(REPO)) for path in written), "and assets/profiles/README.md")


def check_linearity(small: Profile, small_cfg: ProfilerConfig, large: Profile, large_cfg: ProfilerConfig):
    """Rows (label, total error, per-unit error) of predicting ``large`` from ``small`` by rule 2."""
    predicted = scale(small, small_cfg, large_cfg, 1.0)
    names = list(large.names)
    pooled = names.index("avgpool")
    groups = [
        ("all units", list(range(len(names)))),
        ("backbone before pooling (stem and residual blocks)", list(range(pooled))),
        ("pooling, projection and head", list(range(pooled, len(names)))),
    ]
    label = f"ResNet-18 batch {small_cfg.batch_size} -> {large_cfg.batch_size} at {IMAGE} px"
    return [(f"{label}, {what}", *errors(predicted, large, units)) for what, units in groups]


if __name__ == "__main__":
    main()
