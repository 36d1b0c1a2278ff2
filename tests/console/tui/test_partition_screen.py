"""The profile & partition screen on the emulated cluster: reference profile, CWB cut points, replicas, profiling."""

from __future__ import annotations

import pytest
from textual.widgets import Button, DataTable, Input, Static

from assets import asset_path
from console.services.partition_plan import plan_partitions
from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.partition import PartitionScreen
from console.tui.screens.profile_dialog import ProfileDialog
from console.tui.widgets.layer_strip import LayerStrip
from engine.cwb.profile_format import load_profile
from tests.console.tui.conftest import CLUSTER_NODES, screen_text, wait_for


def fleet_ready(app) -> bool:
    return len(app.fleet.names) == CLUSTER_NODES


async def test_reference_profile_is_cut_where_cwb_says_with_a_replica_plan(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: fleet_ready(app))
        await pilot.press("2", "t")
        screen = app.screen
        assert isinstance(screen, PartitionScreen)
        await wait_for(pilot, lambda: screen.plan is not None)
        expected = plan_partitions(load_profile(asset_path("profiles/tx2-resnet18.json")), "ref",
                                   [view.info for view in app.fleet.views()])
        strip = screen.query_one(LayerStrip)
        assert expected.partitions == screen.plan.partitions == 3 and screen.plan.automatic
        assert strip.candidate.cuts == expected.result.best.cuts
        assert strip.candidate.cut_names == ("maxpool", "layer2_0")
        assert strip.owners() == [0] * 4 + [1] * 3 + [2] * 14
        table = screen.query_one("#candidates", DataTable)
        assert table.row_count == len(expected.result.candidates)
        assert str(table.get_row_at(0)[1]) == "maxpool, layer2_0"
        replicas = str(screen.query_one("#replicas", Static).render())
        assert "P1: node-" in replicas and "dynamic 1/1/1" in replicas
        assert "3 stage(s) (fewest that fit memory) over 3 nodes" in screen_text(app)
        await pilot.press("down")  # the second candidate is drawn on the strip
        assert strip.candidate.cuts == expected.result.candidates[1].cuts
        await pilot.press("minus")  # two stages do not fit 1.5 GB nodes: the reason is shown
        await wait_for(pilot, lambda: screen.problem is not None)
        assert screen.problem.startswith("no cut of 21 layers into 2 partitions fits")
        assert table.row_count == 0 and strip.candidate is None
        await pilot.press("a")
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.partitions == 3)
        # The fastest simulated plan and the baselines sit side by side, ready to launch.
        plans = screen.query_one("#plans", DataTable)
        options = screen.plan_options()
        assert plans.row_count == len(options) == 1 + len(screen.plan.recommendation.baselines)
        assert options[0].fits and all(options[0].predicted_iteration_ms <= o.predicted_iteration_ms
                                       for o in options[1:] if o.fits and o.predicted_iteration_ms)
        await pilot.press("m")  # the paper's memory count: 7.6 GB cannot be cut into 3 stages of 1.5 GB
        await wait_for(pilot, lambda: screen.problem is not None or (screen.plan and screen.plan.accounting == "paper"))
        assert screen.current_accounting() == "paper"
        await pilot.press("m")
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.accounting == "exact")


@pytest.mark.slow
async def test_profiling_a_node_measures_a_real_profile_and_partitions_it(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: fleet_ready(app))
        await pilot.press("2", "p")
        dialog = app.screen
        assert isinstance(dialog, ProfileDialog) and dialog.node == "node-1"
        dialog.query_one("#batch", Input).value = "2"
        dialog.query_one("#size", Input).value = "32"
        dialog.query_one("#ok", Button).press()
        # The header is redrawn by a message after the slot changes: wait for the drawing, not the slot.
        await wait_for(pilot, lambda: "profiling node-1" in screen_text(app), timeout=10)
        assert app.profile_slot.running == "node-1"
        await wait_for(pilot, lambda: app.profile_slot.running is None, timeout=240)
        slot = app.profile_slot
        assert slot.error is None and slot.origin == "measured on node-1"
        assert slot.profile.settings.batch_size == 2 and slot.profile.settings.image_size == 32
        assert len(slot.profile.layers) == 21 and slot.profile.total_compute_ms > 0
        screen = app.screen
        await wait_for(pilot, lambda: screen.plan is not None and screen.plan.profile is slot.profile)
        assert screen.query_one(LayerStrip).profile is slot.profile
        assert any("profile loaded: measured on node-1" in line.text for line in app.log_lines)
