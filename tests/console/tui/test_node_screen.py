"""The node detail screen (live tegrastats view) on a real emulated agent, and its Jetson panels (scripted)."""

from __future__ import annotations

import psutil

from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.node import NodeScreen
from console.tui.widgets.line_chart import LineChart
from console.tui.widgets.meters import Meters
from tests.console.tui.conftest import screen_text, wait_for
from tests.console.tui.scripted import ScriptedBackend, jetson_sample


async def test_live_panels_of_an_emulated_node_fill_and_its_history_grows(cluster):
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: app.fleet.get("node-2") is not None and app.fleet.get("node-2").latest)
        app.open_node("node-2")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, NodeScreen) and screen.node == "node-2"
        cores = screen.query_one("#cpu-meters", Meters)
        await wait_for(pilot, lambda: len(cores.gauges) == psutil.cpu_count())  # the host's cores
        memory = [g.label for g in screen.query_one("#memory-meters", Meters).gauges]
        assert memory[:2] == ["agent", "RAM"]
        pid = app.fleet.get("node-2").latest.agent.pid
        assert f"agent pid {pid}" in screen_text(app)
        chart = screen.query_one("#chart-cpu", LineChart)
        seen = len(chart.values)
        await wait_for(pilot, lambda: len(chart.values) >= seen + 2)  # new readings keep arriving
        assert "no power rails (psutil source)" in screen_text(app)
        await pilot.press("escape")
        assert not isinstance(app.screen, NodeScreen)


async def test_jetson_panels_show_cores_gpu_engines_temperatures_and_rails(tx2_nodes):
    backend = ScriptedBackend(tx2_nodes[:1])
    app = create_app(backend=backend)
    async with app.run_test(size=(100, 50)) as pilot:
        await wait_for(pilot, lambda: app.fleet.names == ["tx2-1"])
        for load in (10.0, 20.0, 30.0):
            backend.push_reading("tx2-1", jetson_sample(load))
        await wait_for(pilot, lambda: len(app.fleet.get("tx2-1").history) == 3)
        await pilot.press("enter")
        screen = app.screen
        cpu = screen.query_one("#cpu-meters", Meters).gauges
        assert [g.text.strip() for g in cpu] == ["30% 2035MHz", "31% 2035MHz", "32% 2035MHz", "33% 2035MHz", "off", "off"]
        gpu = {g.label: g.text.strip() for g in screen.query_one("#gpu-meters", Meters).gauges}
        assert gpu == {"GPU": "40% 1300MHz", "APE": "150MHz", "NVENC": "off"}
        memory = {g.label: g.text.strip() for g in screen.query_one("#memory-meters", Meters).gauges}
        assert memory == {"RAM": "3.0G/7.7G", "SWAP": "0M/3.8G", "EMC": "12% 1866MHz"}
        assert screen.query_one("#chart-cpu", LineChart).values == (10.0 + 1.5, 20.0 + 1.5, 30.0 + 1.5)
        text = screen_text(app)
        assert "PMIC" in text and "offline" in text  # the AO zone reads -256 C: offline
        assert "VDD_IN      5200 mW" in text and "5.2 W (VDD_IN)" in text
