"""The profile & partition screen: per-layer time and memory, CWB candidates with E, cut points, replica plan,
and the fastest simulated plan beside the baselines, any of which the operator can launch."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import get_current_worker

from console.partition_text import e_text, stage_colour
from console.services.partition_plan import PartitionPlan, plan_partitions
from console.services.training_run import TrainRequest
from console.tui import format as fmt
from console.tui.messages import FleetChanged, PlanChanged
from console.tui.widgets.layer_strip import LayerStrip
from console.tui.widgets.readout import Readout
from console.tui.widgets.top_bar import TopBar
from engine.cwb.cost import ACCOUNTINGS, Candidate
from engine.cwb.fastest import PlanOption
from engine.cwb.units import format_bytes
from engine.errors import PartitionError


def candidate_cells(index: int, candidate: Candidate) -> list[Text | str]:
    """A row of the candidates table."""
    busy = Text()
    for stage in candidate.stages:
        if stage.index:
            busy.append("/")
        busy.append(f"{stage.busy_ms:.0f}", style=stage_colour(stage.index))
    memory = "/".join(f"{stage.memory_bytes / 1e9:.2f}" for stage in candidate.stages)
    fits = Text("fits", style="green") if candidate.fits else Text("over", style="red")
    return [Text("★" if index == 0 else str(index + 1), style="bold yellow" if index == 0 else ""),
            ", ".join(candidate.cut_names) or "—", busy, f"{candidate.minibatch_ms:.0f}", memory, fits,
            Text(e_text(candidate), style="bold")]


class PartitionScreen(Screen):
    """Shows the app's profile split by CWB over the fleet; the highlighted candidate is drawn on the strip."""

    BINDINGS = [
        Binding("t", "reference", "TX2 ref"),
        Binding("o", "open", "Open"),
        Binding("p", "profile", "Profile node"),
        Binding("plus,equals_sign", "partitions(1)", "+stage"),
        Binding("minus", "partitions(-1)", "-stage"),
        Binding("a", "automatic", "Auto stages", show=False),
        Binding("m", "accounting", "Memory count"),
        Binding("l", "launch", "Launch plan"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.partitions: int | None = None
        self.plan: PartitionPlan | None = None
        self.problem: str | None = None
        self._planned: set[str] = set()
        self.accounting: str | None = None
        """``exact`` or ``paper``; None follows the cluster's (``m`` switches)."""

    def compose(self) -> ComposeResult:
        yield TopBar("profile")
        yield Readout(id="plan-header")
        yield LayerStrip(id="layer-strip")
        yield DataTable(id="candidates", cursor_type="row", zebra_stripes=True)
        yield Static(id="replicas")
        yield DataTable(id="plans", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#candidates", DataTable)
        for column in ("#", "cut after", "busy ms per stage", "T ms", "GB", "mem", "E"):
            table.add_column(column)
        plans = self.query_one("#plans", DataTable)
        for column in ("plan", "cut after", "replicas", "chains", "next hop", "ms/it", "fits"):
            plans.add_column(column)
        self.set_interval(1.0, self._show_header)
        self.replan()

    def on_screen_resume(self) -> None:
        self.replan()

    def on_plan_changed(self, _message: PlanChanged) -> None:
        self.replan()

    def on_fleet_changed(self, _message: FleetChanged) -> None:
        # Readings do not change the search; only a different set of nodes does.
        if {view.info.name for view in self.app.fleet.views()} != self._planned:
            self.replan()

    def replan(self) -> None:
        """Search again for the current profile, fleet and number of stages (in a thread)."""
        slot = self.app.profile_slot
        nodes = tuple(view.info for view in self.app.fleet.views())
        self._planned = {node.name for node in nodes}
        if slot.profile is None:
            self._show(None, None)
            return
        self._search(slot.profile, slot.origin, nodes, self.partitions, self.current_accounting())

    def current_accounting(self) -> str:
        """The operator's choice, else the cluster's, else exact."""
        return self.accounting or getattr(self.app.backend, "memory_accounting", None) or "exact"

    @work(thread=True, exclusive=True, group="partition-search")
    def _search(self, profile, origin, nodes, partitions, accounting) -> None:
        try:
            plan, problem = plan_partitions(profile, origin, nodes, partitions, accounting=accounting), None
        except PartitionError as exc:
            plan, problem = None, str(exc)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show, plan, problem)

    def _show(self, plan: PartitionPlan | None, problem: str | None) -> None:
        self.plan, self.problem = plan, problem
        table = self.query_one("#candidates", DataTable)
        table.clear()
        self._show_plans(plan)
        profile = self.app.profile_slot.profile
        if plan is None:
            self.query_one(LayerStrip).show(profile, None)
            self.query_one("#replicas", Static).update(Text(problem or "", style="red"))
            self._show_header()
            return
        for index, candidate in enumerate(plan.result.candidates):
            table.add_row(*candidate_cells(index, candidate), key=str(index))
        self._draw_candidate(plan.result.best)
        self._show_header()

    def plan_options(self) -> list[PlanOption]:
        """The recommended plan, then the baselines, as the plans table lists them."""
        recommendation = self.plan.recommendation if self.plan is not None else None
        if recommendation is None:
            return []
        return [recommendation.recommended, *recommendation.baselines]

    def _show_plans(self, plan: PartitionPlan | None) -> None:
        plans = self.query_one("#plans", DataTable)
        plans.clear()
        if plan is None:
            return
        for index, option in enumerate(self.plan_options()):
            name = Text("★ fastest", style="bold green") if index == 0 else option.method
            ms = "—" if option.predicted_iteration_ms is None else f"{option.predicted_iteration_ms:.0f}"
            plans.add_row(name, ", ".join(option.cut_names) or "—", "/".join(map(str, option.replicas)), option.mode,
                          option.policy.replace("_", " ") if option.mode == "dynamic" else "—", ms,
                          Text("yes", style="green") if option.fits else Text("no", style="red"), key=str(index))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "candidates":
            return
        if self.plan is not None and event.row_key is not None and event.row_key.value is not None:
            self._draw_candidate(self.plan.result.candidates[int(event.row_key.value)])

    def _draw_candidate(self, candidate: Candidate) -> None:
        assert self.plan is not None
        self.query_one(LayerStrip).show(self.plan.profile, candidate)
        self.query_one("#replicas", Static).update(self._replica_text(candidate))

    def _replica_text(self, candidate: Candidate) -> Text:
        plan = self.plan
        assert plan is not None
        out = Text()
        for stage in candidate.stages:
            out.append(f"P{stage.index + 1} ", style=f"bold {stage_colour(stage.index)}")
            out.append(f"{stage.node} {stage.compute_ms:.0f}+{stage.send_ms:.0f}ms "
                       f"{stage.memory_bytes / 1e9:.2f}/{format_bytes(stage.memory_budget)}  ")
        out.append("\n")
        report = plan.replicas
        if candidate is not plan.result.best or report is None:
            out.append("replica plan: for the best candidate (★) that fits memory", style="dim")
            return out
        best = report.best
        out.append("replicas ", style="bold")
        for stage, names in enumerate(best.nodes):
            out.append(f"P{stage + 1}: ", style=f"bold {stage_colour(stage)}")
            out.append(", ".join(names) + ("  ← bottleneck" if stage == best.bottleneck else "") + "   ")
        if best.idle:
            out.append(f"idle: {', '.join(best.idle)}", style="dim")
        out.append(f"\ndynamic {'/'.join(map(str, best.replicas))}: {fmt.ms(best.iteration_ms)} per iteration   "
                   f"fixed {report.fixed_chains} chain(s): {fmt.ms(report.fixed_iteration_ms)} per iteration")
        return out

    def _show_header(self) -> None:
        slot = self.app.profile_slot
        out = Text()
        if slot.running is not None:
            out.append(f" profiling {slot.running}… {time.monotonic() - slot.started:.0f} s  ", style="bold yellow")
        if slot.error:
            out.append(f" {slot.error}\n", style="red")
        profile = slot.profile
        if profile is None:
            out.append(" no profile loaded", style="dim")
            self.query_one("#plan-header", Readout).show(out)
            return
        s = profile.settings
        out.append(f" {slot.origin}", style="bold")
        out.append(f"  {s.backbone} · batch {s.batch_size} · {s.image_size}px · {len(profile.layers)} layers · "
                   f"{fmt.ms(profile.total_compute_ms)} · {format_bytes(profile.total_state_bytes)}")
        plan = self.plan
        if plan is not None:
            why = "fewest that fit memory" if plan.automatic else "chosen"
            out.append(f"\n {plan.partitions} stage(s) ({why}) over {len(self._planned)} nodes · "
                       f"{plan.result.feasible_count} cut sets fit · best E {e_text(plan.result.best)} · "
                       f"memory counted {plan.accounting} (m)", style="dim")
        self.query_one("#plan-header", Readout).show(out)

    def action_reference(self) -> None:
        """Load the shipped TX2 ResNet-18 profile."""
        self.app.load_reference_profile()

    def action_open(self) -> None:
        """Ask for a profile file to load."""
        self.app.ask_profile_file()

    def action_profile(self) -> None:
        """Ask which node to profile, with which settings."""
        self.app.profile_node(None)

    def action_partitions(self, step: int) -> None:
        """One stage more or fewer than now."""
        current = self.plan.partitions if self.plan is not None else (self.partitions or 1)
        self.partitions = max(1, current + step)
        self.replan()

    def action_accounting(self) -> None:
        """Switch between the exact memory count and the paper's (every layer's input and output)."""
        current = self.current_accounting()
        self.accounting = ACCOUNTINGS[(ACCOUNTINGS.index(current) + 1) % len(ACCOUNTINGS)]
        self.replan()

    def action_launch(self) -> None:
        """Train the plan highlighted in the plans table (the fastest when none is)."""
        options = self.plan_options()
        if not options:
            self.app.notify("no runnable plan to launch", severity="warning")
            return
        row = self.query_one("#plans", DataTable).cursor_row
        option = options[row if 0 <= row < len(options) else 0]
        if not option.fits:
            self.app.notify(f"the {option.method} plan does not fit the nodes' memory", severity="error")
            return
        self.app.start_training(TrainRequest(
            mode=option.mode, policy=option.policy.replace("_", "-"), cut_after=option.cut_names,
            replicas=option.replicas if option.mode == "dynamic" else (), memory_accounting=self.plan.accounting))

    def action_automatic(self) -> None:
        """Back to the fewest stages that fit memory."""
        self.partitions = None
        self.replan()
