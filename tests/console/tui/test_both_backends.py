"""The console's functional path against both fleet backends: the emulated cluster (local agent processes)
and a board reached over SSH (a real OpenSSH sshd on loopback), as an operator uses it: the fleet screen
fills with live figures, a node's detail screen opens on it, the log says which cluster this is."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable

from console.fleet.inventory import load_inventory
from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.node import NodeScreen
from tests.console.tui.conftest import CLUSTER_NODES, screen_text, wait_for


@pytest.fixture(params=["local", pytest.param("ssh", marks=pytest.mark.ssh)])
def launch(request) -> tuple[LaunchOptions, int, str]:
    """The console's options for one backend, the node count it will show and the backend's title word."""
    if request.param == "local":
        request.getfixturevalue("cluster")
        return LaunchOptions(interval=0.5), CLUSTER_NODES, "local emulated cluster"
    for name in ("sshd", "trusted"):
        request.getfixturevalue(name)
    venv = request.getfixturevalue("node_venv")
    inventory = load_inventory(request.getfixturevalue("make_inventory")(names=("n1",), node_extra=f'venv = "{venv}"'))
    return LaunchOptions(inventory=inventory.path, interval=0.5), 1, "n1"


async def test_the_fleet_fills_with_live_figures_and_a_node_opens(launch):
    options, count, title = launch
    app = create_app(options)
    async with app.run_test(size=(100, 30)) as pilot:
        views = app.fleet.views
        await wait_for(pilot, lambda: len(views()) == count and all(v.latest is not None and v.status.ok for v in views()),
                       timeout=90)
        table = app.screen.query_one(DataTable)
        assert len(table.rows) == count
        first = views()[0]
        cells = [str(cell) for cell in table.get_row(first.info.name)]
        assert cells[1] == "● up" and any("%" in cell for cell in cells)  # its CPU load, measured
        await wait_for(pilot, lambda: f"{count}/{count} up" in screen_text(app))
        await pilot.press("enter")
        assert isinstance(app.screen, NodeScreen) and app.screen.node == first.info.name
        await wait_for(pilot, lambda: "CPU" in screen_text(app) and "Memory" in screen_text(app))
        await pilot.press("escape", "4")
        await wait_for(pilot, lambda: title in screen_text(app) and f"{count} node(s)" in screen_text(app))
        await pilot.press("q")
