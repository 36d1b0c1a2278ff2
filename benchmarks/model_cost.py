"""Model cost, Lite-SRL vs the SimSiam configuration: parameters, peak training memory, step time.

One command: ``.venv/bin/python benchmarks/model_cost.py [--batch 64] [--image-size 64]``.
Both models use the same backbone, batch, image size and optimiser (SGD momentum), measured side
by side in one run. Each measurement runs in a fresh subprocess (so one model's allocator state
cannot flatter the other), alternating the two models, and the median over rounds is reported.
Memory is reported two ways: the exact training state (weights + gradients + momentum + the
tensors autograd saves for backward, counted with saved_tensors_hooks) and the measured peak
resident memory of the training process (ru_maxrss; on CUDA, torch.cuda.max_memory_allocated).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from report import REPO, write_section

TARGET_PARAMS = 0.6


def measure(variant: str, args: argparse.Namespace) -> dict:
    """Run one training measurement of ``variant`` in this process (called in the child)."""
    import resource
    import time

    import torch

    from engine.model import ModelConfig, build_model
    from engine.optim import OptimConfig, build_optimizer

    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone=args.backbone, variant=variant)).to(device)
    optimizer = build_optimizer(model, OptimConfig())
    for group in optimizer.param_groups:
        group["lr"] = 0.01
    views = torch.randn(2 * args.batch, 3, args.image_size, args.image_size, device=device)
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        if step == 0:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = model(views).loss
        else:
            loss = model(views).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    params = sum(p.numel() for p in model.parameters())
    state_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) * 3  # weights, grads, momentum
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"variant": variant, "params": params, "step_s": statistics.median(times),
            "state_mb": (state_bytes + sum(saved.values())) / 2**20, "peak_mb": peak / 2**20, "device": str(device)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu", action="store_true", help="measure on the CPU even if CUDA is present")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    runs: dict[str, list[dict]] = {"litesrl": [], "simsiam": []}
    child_args = [a for a in sys.argv[1:] if a != "--no-record"]
    for _ in range(args.rounds):
        for variant in runs:
            out = subprocess.run([sys.executable, __file__, *child_args, "--child", variant],
                                 capture_output=True, text=True, check=True, cwd=REPO)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    rows = {v: {k: statistics.median(r[k] for r in rs) if k != "variant" and k != "device" else rs[0][k] for k in rs[0]}
            for v, rs in runs.items()}
    lite, sim = rows["litesrl"], rows["simsiam"]
    table = [
        "| model | parameters | training state MB (exact) | peak memory MB (measured) | step time s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in (("Lite-SRL", lite), ("SimSiam configuration", sim)):
        table.append(f"| {name} | {row['params'] / 1e6:.2f} M | {row['state_mb']:.0f} "
                     f"| {row['peak_mb']:.0f} | {row['step_s']:.3f} |")
    ratios = (lite["params"] / sim["params"], lite["state_mb"] / sim["state_mb"], lite["peak_mb"] / sim["peak_mb"],
              lite["step_s"] / sim["step_s"])
    table.append(f"| ratio Lite-SRL / SimSiam | {ratios[0]:.2f}x | {ratios[1]:.2f}x | {ratios[2]:.2f}x | {ratios[3]:.2f}x |")
    met = ratios[0] <= TARGET_PARAMS and ratios[1] < 1 and ratios[2] < 1 and ratios[3] < 1
    verdict = (f"Target <= {TARGET_PARAMS}x the parameters, lower memory and step time: {'met' if met else 'NOT met'}.")
    body = (f"- {args.backbone}, batch {args.batch} (two views: {2 * args.batch} rows), {args.image_size} px, SGD momentum, "
            f"{args.threads} threads, device {lite['device']}; median of {args.rounds} alternating rounds, each a fresh process "
            f"timing {args.steps} steps after {args.warmup} warm-up steps\n\n" + "\n".join(table) + f"\n\n{verdict}\n")
    print(body)
    if not args.no_record:
        write_section("Model cost: Lite-SRL vs SimSiam configuration", "model_cost.py", body)


if __name__ == "__main__":
    main()
