"""Spread of the linear probe over label splits: the earlier Adam probe vs L2 logistic regression (+ kNN).

One command: ``.venv/bin/python benchmarks/probe_spread.py [--checkpoint C] [--seeds 5] [--fractions 0.2]``.
A random-init encoder (or ``--checkpoint``) is probed on RSSCN7 with each probe over the same
``--seeds`` label splits (same features: one network, extracted once), so the std measures what the
probe and the split leave, not the network's initialisation. Images are loaded at 96 px and fed at
64 px, as benchmarks/accuracy.py probes them.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from report import REPO, write_section

import torch  # noqa: E402  (after report, which puts the repository on sys.path)

from engine.data.folder import load_images, scan_labelled  # noqa: E402
from engine.eval_config import EvalConfig  # noqa: E402
from engine.model import ModelConfig  # noqa: E402
from engine.protocol import protocol_markdown, run_protocol  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="encoder to probe (default: random init)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--fractions", default="0.2", help="comma-separated label fractions")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--no-write", action="store_true", help="print without touching BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    classes, records = scan_labelled(args.shared / "datasets" / "rsscn7")
    images = load_images(records, "optical", 96, classes)
    fractions = [float(f) for f in args.fractions.split(",")]
    sections = []
    for linear in ("adam", "logreg"):
        started = time.perf_counter()
        result = run_protocol(images, EvalConfig(image_size=64, linear=linear), fractions, args.seeds, args.checkpoint, None,
                              ModelConfig())
        seconds = time.perf_counter() - started
        sections.append(f"Probe `{linear}` ({seconds:.0f} s for features + {len(fractions) * args.seeds} probe fits, "
                        f"load average {os.getloadavg()[0]:.1f}):\n\n" + protocol_markdown(result))
    body = (f"RSSCN7 ({len(images)} labelled images), encoder: {args.checkpoint or 'random init (one network, seed 0)'}; "
            f"same {args.seeds} label splits for both probes.\n\n" + "\n".join(sections))
    print(body)
    if not args.no_write:
        write_section("Linear probe spread: Adam probe vs logistic regression", "probe_spread.py", body)


if __name__ == "__main__":
    main()
