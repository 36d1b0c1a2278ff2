"""Pretraining throughput: `litesrl pretrain`'s loop vs a plain PyTorch SimSiam loop on lightly's components.

One command: ``.venv/bin/python benchmarks/step_time.py [--batch-size 32] [--image-size 64] [--steps 25]``.
Same machine, same images, batch, view size, SGD settings and one augmentation worker each, one
run after the other in one process. The reference loop is what a user would write from lightly's
SimSiam example: torchvision ResNet-18 minus fc, ``SimSiamProjectionHead``/``SimSiamPredictionHead``,
``NegativeCosineSimilarity`` and ``SimSiamTransform`` in a DataLoader. Ours runs the production
path (``engine.pretrain.Pretrainer``) with the SimSiam heads (same architecture as the reference)
and with the Lite-SRL heads. Images/s counts images (each gives two views) over the steps after
``--warmup``: "step" times forward + backward + SGD only, "end to end" includes waiting for data.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from report import REPO, write_section

import torch  # noqa: E402  (after report, which puts the repository on sys.path)
from torch import nn  # noqa: E402

from engine.augment import AugmentConfig  # noqa: E402
from engine.data.folder import ImageSet, load_images, scan_unlabelled  # noqa: E402
from engine.lr_schedule import scaled_lr  # noqa: E402
from engine.model import ModelConfig  # noqa: E402
from engine.pretrain import PretrainConfig, Pretrainer, RunOptions  # noqa: E402


def ours(images: ImageSet, variant: str, args: argparse.Namespace) -> tuple[float, float]:
    config = PretrainConfig(model=ModelConfig(variant=variant), augment=AugmentConfig(size=args.image_size),
                            batch_size=args.batch_size, steps=args.steps, warmup_steps=0)
    trainer = Pretrainer(config, images, RunOptions(out_dir=args.out / variant, workers=1, precision=args.precision))
    history = trainer.run()[args.warmup:]
    step = args.batch_size / statistics.mean(m.step_seconds for m in history)
    wall = args.batch_size * (len(history) - 1) / (history[-1].elapsed_seconds - history[0].elapsed_seconds)
    return step, wall


class _PIL(torch.utils.data.Dataset):
    def __init__(self, images: torch.Tensor, transform) -> None:
        from torchvision.transforms.v2 import functional as TF

        self.images = [TF.to_pil_image(image) for image in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(self.images[index])


def lightly_loop(images: ImageSet, args: argparse.Namespace) -> tuple[float, float]:
    import torchvision
    from lightly.loss import NegativeCosineSimilarity
    from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
    from lightly.transforms import SimSiamTransform

    resnet = torchvision.models.resnet18()
    backbone = nn.Sequential(*list(resnet.children())[:-1], nn.Flatten(1))
    projection, prediction = SimSiamProjectionHead(512, 2048, 2048), SimSiamPredictionHead(2048, 512, 2048)
    criterion = NegativeCosineSimilarity()
    params = [*backbone.parameters(), *projection.parameters(), *prediction.parameters()]
    optimizer = torch.optim.SGD(params, lr=scaled_lr(0.05, args.batch_size), momentum=0.9, weight_decay=1e-4)
    loader = torch.utils.data.DataLoader(_PIL(images.images, SimSiamTransform(input_size=args.image_size)),
                                         batch_size=args.batch_size,
                                         shuffle=True, drop_last=True, num_workers=1, persistent_workers=True)
    step_times, marks = [], []
    done = 0
    while done < args.steps:
        for (x0, x1) in loader:
            tick = time.perf_counter()
            z0, z1 = projection(backbone(x0)), projection(backbone(x1))
            p0, p1 = prediction(z0), prediction(z1)
            loss = 0.5 * (criterion(p0, z1.detach()) + criterion(p1, z0.detach()))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            now = time.perf_counter()
            step_times.append(now - tick)
            marks.append(now)
            done += 1
            if done == args.steps:
                break
    step = args.batch_size / statistics.mean(step_times[args.warmup:])
    wall = args.batch_size * (len(marks) - args.warmup - 1) / (marks[-1] - marks[args.warmup])
    return step, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5, help="first steps left out of the figures")
    parser.add_argument("--precision", default="fp32", help="of our loop (the reference runs fp32)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-step-time")
    parser.add_argument("--no-write", action="store_true", help="print without touching BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images = load_images(scan_unlabelled([args.shared / "datasets" / "rsscn7_pool128"]), "optical", int(args.image_size * 1.5))
    rows = []
    load_before = os.getloadavg()[0]
    for label, run in (("lightly SimSiam loop (reference)", lambda: lightly_loop(images, args)),
                       ("litesrl pretrain, SimSiam heads", lambda: ours(images, "simsiam", args)),
                       ("litesrl pretrain, Lite-SRL heads", lambda: ours(images, "litesrl", args))):
        step, wall = run()
        rows.append(f"| {label} | {step:.1f} | {wall:.1f} |")
        print(rows[-1], flush=True)
    body = "\n".join([
        f"Batch {args.batch_size}, {args.image_size} px views, {args.steps} steps ({args.warmup} left out), ResNet-18, "
        f"{args.threads} threads, one augmentation worker each, our precision {args.precision}; "
        f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.", "",
        "| loop | step images/s | end-to-end images/s |", "|---|---:|---:|", *rows])
    print(body)
    if not args.no_write:
        write_section("Pretraining throughput: litesrl vs a lightly SimSiam loop", "step_time.py", body)


if __name__ == "__main__":
    main()
