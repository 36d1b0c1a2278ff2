"""Screenshots of every console screen against the emulated cluster, into ``assets/screenshots/`` (SVG, and PNG).

One command: ``.venv/bin/python scripts/screenshots.py``. It uses the running emulated cluster, or
starts one (six TX2-like agents with the paper's 3 GB each and its memory count, so CWB cuts the model in three stages) and stops
it afterwards; it loads the shipped TX2 profile, runs a short dynamic training and captures the
chains mid-run. PNGs are written when ``cairosvg`` is installed (``pip install cairosvg``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from console.services.training_run import TrainRequest  # noqa: E402
from console.tui.launch import LaunchOptions, create_app  # noqa: E402

OUT = REPO / "assets" / "screenshots"


async def until(pilot, condition, timeout: float, what: str) -> None:
    """Let the app run until ``condition()``; SystemExit naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: gave up waiting for {what} after {timeout:.0f} s")
        await pilot.pause(0.05)


def save(app, name: str, title: str, png: bool) -> None:
    """Write ``name``.svg (and .png) of the current screen."""
    svg = app.export_screenshot(title=title)
    (OUT / f"{name}.svg").write_text(svg, encoding="utf-8")
    written = [f"{name}.svg"]
    if png:
        import cairosvg

        cairosvg.svg2png(bytestring=svg.encode("utf-8"), write_to=str(OUT / f"{name}.png"), output_width=1600)
        written.append(f"{name}.png")
    print(f"wrote {', '.join(written)}")


async def capture(size: tuple[int, int], nodes: int, png: bool) -> None:
    app = create_app(LaunchOptions(local=nodes, time_scale=0.1, interval=1.0))
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: app.fleet.views() and all(v.latest for v in app.fleet.views()), 300, "the cluster")
        await pilot.press("2", "t")
        await until(pilot, lambda: getattr(app.screen, "plan", None) is not None, 30, "the partition search")
        await pilot.pause(0.5)
        save(app, "partition", "litesrl-console: profile & partition", png)
        app.start_training(TrainRequest(mode="dynamic", iterations=100, average_every=20))
        await until(pilot, lambda: app.training.completed >= 12 and sum(
            1 for link in app.training.live_links if link.from_node) >= 2, 300, "chains mid-run")
        save(app, "training", "litesrl-console: live chain formation", png)
        await pilot.press("1")
        await pilot.pause(8)  # the fleet under load, with some history
        save(app, "fleet", "litesrl-console: fleet", png)
        await pilot.press("enter")
        await pilot.pause(2)
        save(app, "node", "litesrl-console: node detail", png)
        await pilot.press("escape", "question_mark")
        await pilot.pause(0.5)
        save(app, "help", "litesrl-console: help", png)
        await pilot.press("escape", "ctrl+p")
        await pilot.pause(0.5)
        await pilot.press(*"node")
        await pilot.pause(1)
        save(app, "palette", "litesrl-console: command palette", png)
        await pilot.press("escape", "3")
        await until(pilot, lambda: app.training_process in ("finished",) or "failed" in app.training_process,
                    600, "the end of the run")
        save(app, "training-finished", "litesrl-console: training finished", png)
        await pilot.press("4")
        await pilot.pause(0.5)
        save(app, "logs", "litesrl-console: logs", png)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=120, help="Terminal columns (default 120).")
    parser.add_argument("--height", type=int, default=36, help="Terminal rows (default 36).")
    parser.add_argument("--nodes", type=int, default=6, help="Emulated nodes to start when none is up (default 6).")
    parser.add_argument("--no-png", action="store_true", help="SVG only.")
    args = parser.parse_args()
    png = not args.no_png and importlib.util.find_spec("cairosvg") is not None
    if not args.no_png and not png:
        print("cairosvg is not installed (pip install cairosvg): SVG only")
    OUT.mkdir(parents=True, exist_ok=True)
    asyncio.run(capture((args.width, args.height), args.nodes, png))


if __name__ == "__main__":
    main()
