"""The training screen drives a real short DHP run on the emulated cluster and draws its chains as they form."""

from __future__ import annotations

import pytest

from console.services.training_run import TrainRequest
from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.training import TrainingScreen
from console.tui.widgets.chain_board import ChainBoard
from tests.console.tui.conftest import CLUSTER_NODES, screen_text, wait_for

ITERATIONS = 6


@pytest.mark.slow
async def test_a_dynamic_run_forms_chains_live_and_finishes(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.fleet.names) == CLUSTER_NODES)
        app.start_training(TrainRequest(mode="dynamic", iterations=ITERATIONS, average_every=3))
        await pilot.pause()
        assert isinstance(app.screen, TrainingScreen)
        hops_seen: set[tuple[str | None, str]] = set()
        drawn_links = False

        def watch() -> bool:
            nonlocal drawn_links
            for link in app.training.live_links:
                hops_seen.add((link.from_node, link.to_node))
            if any(link.from_node for link in app.training.live_links):
                drawn_links = drawn_links or "▶" in screen_text(app)
            return app.training_process in ("finished",) or app.training_process.startswith("training failed")

        await wait_for(pilot, watch, timeout=240, step=0.05)
        state = app.training
        assert app.training_process == "finished", app.training_process
        # 1.5 GB nodes hold the TX2 profile in three stages, one node each (CWB's 1/1/1).
        assert sorted(name for names in state.stages for name in names) == ["node-1", "node-2", "node-3"]
        assert [len(names) for names in state.stages] == [1, 1, 1]
        # Links appeared between consecutive stages while chains formed, and vanished when they completed.
        stage_of = {name: s for s, names in enumerate(state.stages) for name in names}
        forwarded = [(a, b) for a, b in hops_seen if a is not None]
        assert forwarded and all(stage_of[b] == stage_of[a] + 1 for a, b in forwarded)
        assert drawn_links
        assert state.live_links == [] and state.finished is not None and state.finished.reason is None
        assert state.completed == ITERATIONS and len(state.losses) == ITERATIONS
        assert sum(a.iterations for a in state.nodes.values() if a.stage == 0) == ITERATIONS
        board = app.screen.query_one(ChainBoard)
        assert f"{ITERATIONS} it" in screen_text(app) and board.state is state
        assert f"{ITERATIONS}/{ITERATIONS}" in screen_text(app)
