"""``python -m nodes.profile_main``: measure the CWB profile on this board (paper 3.3.1), without a CLI framework.

What ``litesrl nodes profile`` and the console's ``p`` run on a board over SSH, and what
``litesrl profile`` runs on the ground station. Progress goes to stderr, one line per unit; with
``--json`` stdout holds one document ``{"path", "totals", "profile"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from engine.errors import EngineError

BACKBONES = ("resnet18", "resnet34", "resnet50")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nodes.profile_main",
                                     description="Time forward and backward of every cut unit and count its memory.")
    parser.add_argument("--out", type=Path, required=True, help="Write the measured profile here (litesrl-profile JSON).")
    parser.add_argument("--backbone", choices=BACKBONES, default="resnet18", help="Encoder backbone.")
    parser.add_argument("--variant", choices=("litesrl", "simsiam"), default="litesrl", help="Projection/prediction heads.")
    parser.add_argument("--stem", choices=("imagenet", "compact"), default="imagenet", help="First layers.")
    parser.add_argument("--batch-size", type=int, default=64, help="Images per mini-batch (paper: 64).")
    parser.add_argument("--image-size", type=int, default=224, help="Side of each view in pixels (paper: 224).")
    parser.add_argument("--modality", choices=("optical", "sar"), default="optical", help="3 or 1 input channels.")
    parser.add_argument("--optimizer", choices=("sgd", "adam", "sgd-nomomentum"), default="sgd", help="Optimizer state.")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="Tensor dtype.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--repeats", type=int, default=5, help="Timed runs per unit; the median is kept.")
    parser.add_argument("--warmup", type=int, default=2, help="Untimed runs per unit before timing.")
    parser.add_argument("--clock", choices=("wall", "process"), default="wall", help="Wall time or process CPU time.")
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores).")
    parser.add_argument("--json", action="store_true", help="Print the profile and its totals as JSON on stdout.")
    return parser


def profiler_config(backbone: Any, variant: Any, stem: Any, batch_size: int, image_size: int, modality: str,
                    optimizer: Any, dtype: Any, device: str, repeats: int, warmup: int, clock: Any,
                    threads: int | None):
    """The validated profiler settings (torch threads set, device checked); raises EngineError on a bad one.

    The choices (backbone, variant, stem, optimizer, dtype, clock) are the engine's literals, already
    restricted by the callers' option parsers.
    """
    from engine.cwb.profiler import ProfilerConfig
    from engine.device import resolve_device, set_threads
    from engine.model import ModelConfig

    set_threads(threads)
    model = ModelConfig(backbone=backbone, variant=variant, in_channels=1 if modality == "sar" else 3, stem=stem)
    config = ProfilerConfig(model=model, batch_size=batch_size, image_size=image_size, optimizer=optimizer,
                            dtype=dtype, device=device, repeats=repeats, warmup=warmup, clock=clock)
    resolve_device(device)  # a bad device fails before any model is built
    return config


def totals(profile) -> dict[str, Any]:
    """Whole-model sums of a profile: time (forward, backward) and training memory split by kind."""
    layers = profile.layers
    return {
        "forward_ms": sum(layer.forward_ms for layer in layers),
        "backward_ms": sum(layer.backward_ms for layer in layers),
        "compute_ms": profile.total_compute_ms,
        "param_bytes": sum(layer.param_bytes for layer in layers),
        "grad_bytes": sum(layer.grad_bytes for layer in layers),
        "optimizer_bytes": sum(layer.optimizer_bytes for layer in layers),
        "activation_bytes": sum(layer.activation_bytes for layer in layers),
        "state_bytes": profile.total_state_bytes,
        "paper_bytes": profile.total_paper_bytes,
        "data_ms": profile.data_ms,
    }


def document(profile, path: Path) -> dict[str, Any]:
    """The ``--json`` document: where the profile was written, its totals and the profile itself."""
    return {"path": str(path), "totals": totals(profile), "profile": profile.to_dict()}


def main(argv: list[str] | None = None) -> None:
    """Measure, write ``--out`` atomically and report; a bad setting exits 1 with one line on stderr."""
    from engine.cwb.profile_format import save_profile
    from engine.cwb.profiler import profile_model

    args = build_parser().parse_args(argv)

    def progress(index: int, total: int, layer) -> None:
        sys.stderr.write(f"unit {index + 1}/{total} {layer.name}: {layer.forward_ms:.1f} + {layer.backward_ms:.1f} ms\n")
        sys.stderr.flush()

    try:
        config = profiler_config(args.backbone, args.variant, args.stem, args.batch_size, args.image_size,
                                 args.modality, args.optimizer, args.dtype, args.device, args.repeats, args.warmup,
                                 args.clock, args.threads)
        profile = profile_model(config, progress)
        save_profile(profile, args.out.expanduser())
    except EngineError as exc:
        sys.exit(f"error: {exc}")
    if args.json:
        sys.stdout.write(json.dumps(document(profile, args.out), indent=2) + "\n")
    else:
        sums = totals(profile)
        print(f"wrote {args.out}: {len(profile.layers)} units, {sums['compute_ms']:.1f} ms per mini-batch, "
              f"{sums['state_bytes'] / 1e9:.2f} GB of training state")


if __name__ == "__main__":
    main()
