"""Logs, help and the command palette on the emulated cluster."""

from __future__ import annotations

from textual.command import CommandPalette
from textual.widgets import RichLog

from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.fleet import FleetScreen
from console.tui.screens.help import HelpScreen
from console.tui.screens.logs import LogsScreen
from console.tui.screens.node import NodeScreen
from console.tui.screens.partition import PartitionScreen
from tests.console.tui.conftest import CLUSTER_NODES, screen_text, wait_for


async def test_logs_screen_shows_what_the_console_said(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.fleet.names) == CLUSTER_NODES)
        await pilot.press("4")
        assert isinstance(app.screen, LogsScreen)
        log = app.screen.query_one(RichLog)
        await wait_for(pilot, lambda: any("3 node(s)" in line.text for line in log.lines))
        before = len(log.lines)
        app.load_reference_profile()  # logs "profile loaded" while the log screen is away
        await pilot.press("4")
        await wait_for(pilot, lambda: len(log.lines) > before)
        assert "profile loaded: TX2 reference" in screen_text(app)
        await pilot.press("c")
        assert len(log.lines) == 0


async def test_help_lists_the_bindings_of_the_screen_underneath(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for line in ("Partition screen", "TX2 ref", "Profile node", "Fleet", "Quit"):
            assert line in text
        await pilot.press("escape")
        assert isinstance(app.screen, PartitionScreen)


async def test_command_palette_opens_a_node_and_switches_screens(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: len(app.fleet.names) == CLUSTER_NODES)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"node node-3")
        await wait_for(pilot, lambda: "Node node-3" in screen_text(app), timeout=10)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen))
        assert app.screen.node == "node-3"
        await pilot.press("escape", "ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"TX2 reference", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PartitionScreen) and app.profile_slot.profile is not None)
        assert app.profile_slot.origin == "TX2 reference"
        await pilot.press("1")
        assert isinstance(app.screen, FleetScreen)
