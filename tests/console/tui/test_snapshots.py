"""Text snapshots of every screen at 80x24 with scripted nodes (pure UI: layout regressions show as a diff).

Refresh after an intended change: ``LITESRL_UPDATE_SNAPSHOTS=1 pytest tests/console/tui/test_snapshots.py``,
then read the diff of ``tests/console/tui/snapshots/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from console.fleet.ssh import LinkState, NodeStatus
from console.tui.app import ConsoleApp
from console.tui.settings import ConsoleSettings
from engine.dhp.events import Averaging, ChainDone, ChainLink, Iteration, NodeState, RunStarted
from tests.console.tui.conftest import screen_text, wait_for
from tests.console.tui.scripted import ScriptedBackend, jetson_sample

SNAPSHOTS = Path(__file__).parent / "snapshots"
SIZE = (80, 24)
STAGES = (("tx2-1", "tx2-2", "tx2-3"), ("tx2-4", "tx2-5"), ("tx2-6",))


def normalise(text: str) -> str:
    """Trailing blanks dropped; the one clock-dependent figure (seconds since a reading) masked."""
    text = re.sub(r"\d+s ago", "Ns ago", text)
    return "\n".join(line.rstrip() for line in text.splitlines()) + "\n"


async def settled(pilot) -> str:
    """The screen's text once two readings 0.2 s apart agree (pending layout and renders done)."""
    previous = None
    for _ in range(50):
        await pilot.pause(0.2)
        text = screen_text(pilot.app)
        if text == previous:
            return text
        previous = text
    return previous


async def check(name: str, pilot) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    text = normalise(await settled(pilot))
    if os.environ.get("LITESRL_UPDATE_SNAPSHOTS") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    if not path.exists():
        pytest.fail(f"no snapshot {path}: run with LITESRL_UPDATE_SNAPSHOTS=1 to create it")
    assert text == path.read_text(encoding="utf-8"), f"{name} differs from {path}"


@pytest.fixture
async def fleet(tx2_nodes):
    """A running app over six scripted TX2s: five reporting a minute of history, one with an unknown host key."""
    backend = ScriptedBackend(tx2_nodes, title="tx2-rack (inventory.toml)")
    app = ConsoleApp(backend, ConsoleSettings(stale_after=3600.0))  # a slow run must not turn nodes stale
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(app.fleet.names) == 6)
        for node in range(1, 6):
            for second in range(60):
                backend.push_reading(f"tx2-{node}", jetson_sample(8.0 * node + (second * node) % 23,
                                                                  gpu=(second * 7 * node) % 100))
        backend.push(NodeStatus("tx2-6", LinkState.HOST_KEY_UNKNOWN,
                                "host key not in known_hosts; check it and run `litesrl nodes trust tx2-6`"))
        await wait_for(pilot, lambda: len(app.fleet.get("tx2-5").history) == 60
                       and app.fleet.get("tx2-6").status.state is LinkState.HOST_KEY_UNKNOWN)
        app._update_status()
        await pilot.pause()
        yield app, pilot


async def test_fleet_snapshot(fleet):
    app, pilot = fleet
    app.screen.redraw()
    await pilot.pause()
    await check("fleet", pilot)


async def test_node_snapshot(fleet):
    app, pilot = fleet
    await pilot.press("down", "enter")
    await pilot.pause()
    await check("node", pilot)


async def test_partition_snapshot(fleet):
    app, pilot = fleet
    await pilot.press("2", "t")
    await wait_for(pilot, lambda: app.screen.plan is not None)
    await pilot.press("plus", "plus")
    await wait_for(pilot, lambda: app.screen.plan is not None and app.screen.plan.partitions == 3)
    await pilot.pause()
    await check("partition", pilot)


async def test_training_snapshot(fleet):
    app, pilot = fleet
    await pilot.press("3")
    state = app.training
    state.apply(RunStarted(0.0, "dynamic", "first_free", STAGES, 100, 20))
    for i in range(30):
        state.apply(Iteration(1.0 + i * 0.4, i, i, 1.0 / (1 + i / 5), 410.0, ("tx2-1", "tx2-4", "tx2-6")))
    state.apply(Averaging(8.0, "start", 20))
    state.apply(Averaging(8.3, "done", 20, 300.0))
    for chain, batch, hops in ((31, 30, ("tx2-1", "tx2-4", "tx2-6")), (32, 31, ("tx2-2", "tx2-5")), (33, 32, ("tx2-3",))):
        previous = None
        for stage, node in enumerate(hops):
            state.apply(ChainLink(13.0, chain, batch, stage, previous, node))
            state.apply(NodeState(13.0, node, stage, "busy"))
            previous = node
    state.apply(ChainDone(12.9, 30, 29, ("tx2-3", "tx2-5", "tx2-6"), 0.15, 400.0))
    app.training_process = "running, run folder runs/demo"
    app.screen.redraw()
    await pilot.pause()
    await check("training", pilot)


async def test_help_snapshot(fleet):
    app, pilot = fleet
    await pilot.press("question_mark")
    await pilot.pause()
    await check("help", pilot)
