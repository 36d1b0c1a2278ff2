"""The fleet screen against a real emulated cluster, and its stale / disconnected marks (scripted nodes)."""

from __future__ import annotations

import time

from textual.widgets import DataTable

from console.fleet.ssh import LinkState, NodeStatus
from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.node import NodeScreen
from tests.console.tui.conftest import CLUSTER_NODES, screen_text, wait_for
from tests.console.tui.scripted import ScriptedBackend, jetson_sample


def all_reporting(app) -> bool:
    views = app.fleet.views()
    return len(views) == CLUSTER_NODES and all(view.latest is not None and view.status.ok for view in views)


async def test_every_agent_of_the_cluster_is_a_row_with_its_own_figures(cluster):
    from console.cluster.local import read_state

    state = read_state()
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: all_reporting(app))
        table = app.screen.query_one(DataTable)
        assert [str(key.value) for key in table.rows] == [agent.name for agent in state.agents]
        for agent in state.agents:
            view = app.fleet.get(agent.name)
            assert view.latest.agent.pid == agent.pid  # the figures are that agent process's own
            assert view.latest.agent.rss_bytes > 10 * 2**20
            cells = [str(cell) for cell in table.get_row(agent.name)]
            assert cells[1] == "● up" and cells[2] == "tx2"
            assert cells[5].endswith("/1.4G")  # resident memory against the 1.5GB (1.5e9 bytes) budget
        await wait_for(pilot, lambda: f"{CLUSTER_NODES}/{CLUSTER_NODES} up" in screen_text(app))
        await pilot.press("down", "enter")
        assert isinstance(app.screen, NodeScreen) and app.screen.node == state.agents[1].name


async def test_stale_and_disconnected_nodes_are_marked_and_explained(tx2_nodes):
    backend = ScriptedBackend(tx2_nodes[:3])
    app = create_app(backend=backend)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.fleet.names) == 3)
        backend.push_reading("tx2-1", jetson_sample(30.0))
        backend.push_reading("tx2-2", jetson_sample(30.0), age=60.0)  # last reading a minute ago
        backend.push(NodeStatus("tx2-3", LinkState.HOST_KEY_MISMATCH, "host key changed: run `litesrl nodes trust tx2-3`"))
        await wait_for(pilot, lambda: app.fleet.get("tx2-3").status.state is LinkState.HOST_KEY_MISMATCH)
        app.screen.redraw()
        table = app.screen.query_one(DataTable)
        cells = {name: [str(c) for c in table.get_row(name)] for name in ("tx2-1", "tx2-2", "tx2-3")}
        assert cells["tx2-1"][1] == "● up"
        assert cells["tx2-2"][1].startswith("◌ stale 6")  # 60 s old
        assert table.get_row("tx2-2")[3].style == "dim"  # figures of a stale node are dimmed
        assert cells["tx2-3"][1] == "! key changed" and cells["tx2-3"][3] == "—"
        await pilot.press("down", "down")
        assert "tx2-3: host key mismatch: host key changed: run `litesrl nodes trust tx2-3`" in screen_text(app)
        assert app.fleet.count_up(time.monotonic(), app.settings.stale_seconds) == 1
