"""The node detail screen, the live tegrastats view: jtop-like panels for one node with history charts."""

from __future__ import annotations

import time

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer

from console.fleet.ssh import LinkState
from console.services.store import NodeView
from console.tui import format as fmt
from console.tui.messages import FleetChanged
from console.tui.screens.fleet import state_cell
from console.tui.widgets.line_chart import LineChart
from console.tui.widgets.meters import Gauge, Meters
from console.tui.widgets.readout import Readout
from console.tui.widgets.top_bar import TopBar
from nodes.telemetry.sample import Clocked, Sample


def core_gauges(sample: Sample) -> list[Gauge]:
    """One gauge per CPU core: load and clock, or ``off``."""
    gauges = []
    for index, core in enumerate(sample.cpus, start=1):
        if not core.online:
            gauges.append(Gauge(f"CPU{index}", None, "off", "dim"))
            continue
        load = core.load_pct
        text = f"{fmt.pct(load).rjust(4)} {fmt.mhz(core.freq_mhz) if core.freq_mhz else ''}".rstrip()
        gauges.append(Gauge(f"CPU{index}", None if load is None else load / 100, text, fmt.load_style(load)))
    return gauges


def clocked_gauge(label: str, unit: Clocked) -> Gauge:
    """A gauge for a GPU, EMC or engine: load (when known) and clock."""
    if not unit.online:
        return Gauge(label, None, "off", "dim")
    load = unit.load_pct
    clock = fmt.mhz(unit.freq_mhz) if unit.freq_mhz is not None else ""
    text = f"{fmt.pct(load).rjust(4)} {clock}".rstrip() if load is not None else (clock or "on")
    return Gauge(label, None if load is None else load / 100, text, fmt.load_style(load))


def memory_gauges(view: NodeView) -> list[Gauge]:
    """RAM, swap and IRAM of the machine, and the agent's memory against the node's budget."""
    reading = view.latest
    assert reading is not None
    sample, gauges = reading.sample, []
    if reading.agent is not None:
        used, budget = reading.agent.rss_bytes / 2**20, view.info.memory_budget / 2**20
        gauges.append(Gauge("agent", used / budget, f"{fmt.megabytes(used)}/{fmt.megabytes(budget)}",
                            fmt.load_style(100 * used / budget)))
    if sample.ram is not None:
        gauges.append(Gauge("RAM", (sample.ram_percent or 0) / 100,
                            f"{fmt.megabytes(sample.ram.used_mb)}/{fmt.megabytes(sample.ram.total_mb)}",
                            fmt.load_style(sample.ram_percent)))
    if sample.swap is not None and sample.swap.total_mb:
        gauges.append(Gauge("SWAP", sample.swap.used_mb / sample.swap.total_mb,
                            f"{fmt.megabytes(sample.swap.used_mb)}/{fmt.megabytes(sample.swap.total_mb)}", "magenta"))
    if sample.iram is not None and sample.iram.total_kb:
        gauges.append(Gauge("IRAM", sample.iram.used_kb / sample.iram.total_kb,
                            f"{sample.iram.used_kb}/{sample.iram.total_kb}kB", "magenta"))
    if sample.emc is not None:
        gauges.append(clocked_gauge("EMC", sample.emc))
    return gauges


def gpu_gauges(sample: Sample) -> list[Gauge]:
    """The GPU (with per-GPC clocks) and every other engine."""
    gauges = []
    if sample.gpu is not None:
        gauges.append(clocked_gauge("GPU", sample.gpu))
        for index, clock in enumerate(sample.gpu.gpc_freq_mhz):
            gauges.append(Gauge(f" GPC{index}", None, fmt.mhz(clock), "dim"))
    for name, engine in sample.engines.items():
        gauges.append(clocked_gauge(name, engine))
    return gauges


def temperature_table(sample: Sample) -> Table | Text:
    """Every thermal zone, offline ones marked."""
    if not sample.temperatures:
        return Text("no thermal zones", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    for name, temp in sample.temperatures.items():
        value = temp.celsius
        shown = Text("offline", style="dim") if value is None else Text(fmt.celsius(value), style=fmt.temp_style(value))
        table.add_row(name, shown)
    return table


def power_table(sample: Sample) -> Table | Text:
    """Every power rail: instant and average, the total's origin marked."""
    if not sample.rails:
        return Text(f"no power rails ({sample.source} source)", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(justify="right", no_wrap=True, style="dim")
    for name, rail in sample.rails.items():
        style = "bold" if name == sample.power_from else ""
        average = f"avg {rail.average_mw}" if rail.average_mw is not None else ""
        table.add_row(Text(name, style=style), f"{rail.current_mw} mW", average)
    table.add_row(Text("total", style="bold"), Text(fmt.watts(sample.total_power_mw), style="bold"),
                  "" if sample.power_from in (None, "sum") else f"({sample.power_from})")
    return table


class NodeScreen(Screen):
    """Live panels of one node; Escape goes back to the fleet."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    """Below 110 columns the GPU, temperature and power panels take two columns, three above."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("p", "profile", "Profile this node"),
    ]

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def compose(self) -> ComposeResult:
        yield TopBar("fleet")
        yield Readout(id="node-header")
        with VerticalScroll(id="node-body"):
            with Horizontal(classes="node-row"):
                with Vertical(classes="panel", id="cpu-panel") as panel:
                    panel.border_title = "CPU"
                    yield Meters(id="cpu-meters")
                with Vertical(classes="panel", id="memory-panel") as panel:
                    panel.border_title = "Memory"
                    yield Meters(id="memory-meters")
                    yield Readout(id="agent-line")
            with Grid(id="node-units"):
                with Vertical(classes="panel", id="gpu-panel") as panel:
                    panel.border_title = "GPU & engines"
                    yield Meters(id="gpu-meters")
                with Vertical(classes="panel", id="temp-panel") as panel:
                    panel.border_title = "Temperatures"
                    yield Readout(id="temps")
                with Vertical(classes="panel", id="power-panel") as panel:
                    panel.border_title = "Power"
                    yield Readout(id="power")
            with Grid(id="node-charts", classes="panel") as grid:
                grid.border_title = "History"
                yield LineChart("CPU", "%", top=100.0, colour="green", id="chart-cpu")
                yield LineChart("GPU", "%", top=100.0, colour="magenta", id="chart-gpu")
                yield LineChart("RAM", "%", top=100.0, colour="yellow", id="chart-ram")
                yield LineChart("max temp", "°C", colour="red", id="chart-temp")
                yield LineChart("power", " mW", colour="bright_blue", id="chart-power")
        yield Footer()

    def on_mount(self) -> None:
        self.redraw()

    def on_screen_resume(self) -> None:
        self.redraw()

    def on_fleet_changed(self, message: FleetChanged) -> None:
        if self.node in message.nodes:
            self.redraw()

    def redraw(self) -> None:
        """Draw every panel from the node's latest reading and history."""
        view = self.app.fleet.get(self.node)
        header = Text()
        header.append(f" {self.node}", style="bold")
        if view is None:
            self.query_one("#node-header", Readout).show(header.append("  not in the fleet any more", style="red"))
            return
        now, stale = time.monotonic(), self.app.settings.stale_seconds
        header.append(f"  {view.info.board}  {view.info.address}  ", style="dim")
        header.append_text(state_cell(view, now, stale))
        reading = view.latest
        if reading is not None:
            header.append(f"  source {reading.sample.source}, {view.age(now):.0f}s ago", style="dim")
        if view.status.state is not LinkState.UP:
            header.append(f"\n {view.status.reason}", style="yellow")
        self.query_one("#node-header", Readout).show(header)
        if reading is None:
            return
        sample = reading.sample
        self.query_one("#cpu-meters", Meters).show(core_gauges(sample))
        self.query_one("#memory-meters", Meters).show(memory_gauges(view))
        agent = reading.agent
        self.query_one("#agent-line", Readout).show(
            Text(f"agent pid {agent.pid}: {agent.cpu_percent:.0f}% of a core, {agent.threads} threads; "
                 "cores and RAM above are the host's", style="dim") if agent is not None else "")
        gpu = gpu_gauges(sample)
        self.query_one("#gpu-meters", Meters).show(gpu or [Gauge("GPU", None, "none", "dim")])
        self.query_one("#temps", Readout).show(temperature_table(sample))
        self.query_one("#power", Readout).show(power_table(sample))
        self.query_one("#chart-cpu", LineChart).plot(view.figure("cpu"))
        self.query_one("#chart-gpu", LineChart).plot(view.figure("gpu"))
        self.query_one("#chart-ram", LineChart).plot(view.figure("ram"))
        self.query_one("#chart-temp", LineChart).plot(view.figure("temp"))
        self.query_one("#chart-power", LineChart).plot(view.figure("power"))

    def action_profile(self) -> None:
        """Profile this node (on the partition screen)."""
        self.app.profile_node(self.node)
