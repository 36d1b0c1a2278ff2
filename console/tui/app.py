"""The console app: wires the screens to the fleet backend, profiling and training services through messages."""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import datetime
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.reactive import reactive

from assets import asset_path
from console.errors import ConsoleError
from console.process_id import ProcessId
from console.services.backend import FleetBackend, ProfileRequest, Reading
from console.services.leftovers import Leftovers, OrphanRun, find_leftovers, stop_leftovers
from console.services.partition_plan import ProfileSlot
from console.services.store import FleetStore
from console.services.training_run import EVENTS, AttachedRun, TrainingRun, TrainRequest, discard_empty_run, runs_dir
from console.services.training_state import TrainingState
from console.tui.commands import ConsoleCommands
from console.tui.log_handler import AppLogHandler
from console.tui.messages import (
    BackendFailed,
    BackendReady,
    FleetChanged,
    LogLine,
    LogsChanged,
    PlanChanged,
    ProfileFailed,
    ProfileReady,
    TelemetryArrived,
    TrainingChanged,
    TrainingEvents,
    TrainingExited,
)
from console.tui.screens.fleet import FleetScreen
from console.tui.screens.help import HelpScreen
from console.tui.screens.leftovers_dialog import LeftoversDialog
from console.tui.screens.logs import LogsScreen
from console.tui.screens.node import NodeScreen
from console.tui.screens.open_dialog import OpenProfileDialog
from console.tui.screens.partition import PartitionScreen
from console.tui.screens.profile_dialog import ProfileChoice, ProfileDialog
from console.tui.screens.train_dialog import DEFAULT, TrainDialog, profile_choices
from console.tui.screens.training import TrainingScreen
from console.tui.settings import ConsoleSettings
from engine.cwb.profile_format import load_profile
from engine.errors import ProfileError

LOG_LINES = 5000
"""Log lines the console keeps."""

REFERENCE_PROFILE = "profiles/tx2-resnet18.json"
"""The shipped Jetson TX2 ResNet-18 profile (paper 6.1's setting)."""


class ConsoleApp(App):
    """``litesrl-console``: build it with :func:`console.tui.launch.create_app`."""

    CSS_PATH = "console.tcss"
    TITLE = "litesrl console"
    MODES = {"fleet": FleetScreen, "profile": PartitionScreen, "training": TrainingScreen, "logs": LogsScreen}
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding("1", "switch_mode('fleet')", "Fleet", show=False),
        Binding("2", "switch_mode('profile')", "Partition", show=False),
        Binding("3", "switch_mode('training')", "Training", show=False),
        Binding("4", "switch_mode('logs')", "Logs", show=False),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    status_line = reactive("")
    """Cluster, nodes up and run progress, shown by every screen's top bar."""

    def __init__(self, backend: FleetBackend, settings: ConsoleSettings | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.settings = settings or ConsoleSettings()
        self.fleet = FleetStore()
        self.profile_slot = ProfileSlot()
        self.training = TrainingState()
        self.training_process = ""
        self.training_run: TrainingRun | AttachedRun | None = None
        self.log_lines: collections.deque[LogLine] = collections.deque(maxlen=LOG_LINES)
        self.log_count = 0
        self._log_handler = AppLogHandler(self)
        self._shown_states: dict[str, str] = {}

    def on_mount(self) -> None:
        self._log_handler.install()
        self.switch_mode("fleet")
        self._check_leftovers()
        self.set_interval(1.0, self._tick)
        self._update_status()

    async def on_unmount(self) -> None:
        self._log_handler.remove()
        if self.training_run is not None:
            await self.training_run.stop()
        await self.backend.close()

    # -- leftovers of an earlier console ---------------------------------------------------------

    @work(exclusive=True, group="leftovers")
    async def _check_leftovers(self) -> None:
        """Before the backend starts: offer to reuse or stop what a console that died left running."""
        try:
            leftovers = await asyncio.to_thread(find_leftovers)
        except ConsoleError as exc:  # a damaged cluster state file: the backend says it again, with advice
            self._log(f"cannot look for leftovers: {exc}", "warning")
            leftovers = Leftovers()
        if leftovers:
            for line in leftovers.lines():
                self._log(f"left running by an earlier console: {line}", "warning")
            choice = await self.push_screen_wait(LeftoversDialog(leftovers))
            if choice == "stop":
                self._log("stopping what the earlier console left running", "warning")
                await asyncio.to_thread(stop_leftovers, leftovers)
            elif choice == "reuse":
                self._reuse(leftovers)
            else:
                self._log("leaving them running (`litesrl cluster down` stops the cluster, `litesrl status` "
                          "lists training runs)", "warning")
        self._watch_backend()

    def _reuse(self, leftovers: Leftovers) -> None:
        """Take the leftovers over: the cluster becomes this console's, the newest orphaned run is followed."""
        from console.services.backend_local import LocalBackend

        if leftovers.cluster_complete and isinstance(self.backend, LocalBackend):
            try:
                self.backend.take_over()
                self._log("took over the emulated cluster: it stops when this console exits")
            except ConsoleError as exc:
                self._log(f"cannot take over the cluster: {exc}", "error")
        elif leftovers.cluster is not None:
            self._log("the earlier console's cluster is left as it is: this console does not use it", "warning")
        *older, newest = leftovers.runs or (None,)
        for run in older:
            self._log(f"left running: training pid {run.record.process.pid} ({run.folder})", "warning")
        if newest is not None:
            self.reattach(newest)

    def reattach(self, orphan: OrphanRun) -> None:
        """Follow an orphaned training run as if this console had launched it (``x`` stops it, exit too)."""
        if self.training_run is not None and self.training_run.running:
            self.notify("a training run is in progress (x stops it)", severity="warning")
            return
        record = orphan.record.followed_by(ProcessId.me())
        try:
            record.write(orphan.folder)  # a crash of this console leaves it findable again
        except OSError as exc:
            self._log(f"cannot record the reattached run: {exc}", "warning")
        self._log(f"reattached training pid {record.process.pid} ({orphan.folder})", source="train")
        self.switch_mode("training")
        self._reattach(AttachedRun(record, orphan.events, lambda line: self.post_message(LogLine(line, source="train"))),
                       orphan.folder)

    # -- fleet ---------------------------------------------------------------------------------

    @work(exclusive=True, group="backend")
    async def _watch_backend(self) -> None:
        try:
            await self.backend.start()
        except ConsoleError as exc:
            self.post_message(BackendFailed(str(exc)))
            return
        self.post_message(BackendReady(self.backend.nodes))
        async for update in self.backend.updates(self.settings.interval):
            if isinstance(update, Reading):
                self.post_message(TelemetryArrived(readings=(update,)))
            else:
                self.post_message(TelemetryArrived(statuses=(update,)))

    def on_backend_ready(self, message: BackendReady) -> None:
        self.fleet.set_nodes(message.nodes)
        self._log(f"{self.backend.title}: {len(message.nodes)} node(s)")
        self._changed(FleetChanged(frozenset(self.fleet.names)))

    def on_backend_failed(self, message: BackendFailed) -> None:
        self._log(message.reason, "error")
        self.notify(message.reason, title="cannot reach the cluster", severity="error", timeout=30)

    def on_telemetry_arrived(self, message: TelemetryArrived) -> None:
        changed = set()
        for status in message.statuses:
            if self.fleet.apply_status(status):
                changed.add(status.node)
                if not status.ok:
                    self._log(f"{status.node}: {status.state.value}: {status.reason}", "warning", status.node)
        for reading in message.readings:
            if self.fleet.apply_reading(reading):
                changed.add(reading.node)
        if changed:
            self._changed(FleetChanged(frozenset(changed)))

    def _tick(self) -> None:
        """Once a second: nodes that turned stale (or whose stale age grew) are redrawn."""
        now, stale = time.monotonic(), self.settings.stale_seconds
        changed = set()
        for view in self.fleet.views():
            shown = view.state(now, stale).value
            if shown != self._shown_states.get(view.info.name) or shown == "stale":
                changed.add(view.info.name)
            self._shown_states[view.info.name] = shown
        if changed:
            self._changed(FleetChanged(frozenset(changed)))
        self._update_status()

    def _update_status(self) -> None:
        now = time.monotonic()
        up, total = self.fleet.count_up(now, self.settings.stale_seconds), len(self.fleet.names)
        line = f"{self.backend.title} · {up}/{total} up"
        if self.training.started:
            line += f" · training {self.training.completed}/{self.training.total}"
        elif self.training_process:
            line += f" · {self.training_process}"
        self.status_line = line

    def open_node(self, node: str) -> None:
        """Show the live telemetry of ``node`` (on the fleet screen's stack)."""
        self.switch_mode("fleet")
        self.push_screen(NodeScreen(node))

    # -- profiles -------------------------------------------------------------------------------

    def profile_node(self, node: str | None) -> None:
        """Ask how to profile (``node`` preselected), then profile on the partition screen."""
        if self.profile_slot.running is not None:
            self.notify(f"already profiling {self.profile_slot.running}", severity="warning")
            return

        def chosen(choice: ProfileChoice | None) -> None:
            if choice is not None:
                self.switch_mode("profile")
                self.run_profile(choice.node, choice.request)

        self.push_screen(ProfileDialog(self.fleet.names, node), chosen)

    @work(exclusive=True, group="profile")
    async def run_profile(self, node: str, request: ProfileRequest) -> None:
        """Profile ``node`` through the backend; the result arrives as ProfileReady or ProfileFailed."""
        self.profile_slot.running, self.profile_slot.started = node, time.monotonic()
        self._changed(PlanChanged())
        self._log(f"profiling {node}: {' '.join(request.options())}", source="profile")
        try:
            profile = await self.backend.profile(node, request, lambda line: self.post_message(LogLine(line, source="profile")))
        except ConsoleError as exc:
            self.post_message(ProfileFailed(str(exc)))
        else:
            kept = self.backend.measured_profiles().get(node)
            self.post_message(ProfileReady(profile, f"measured on {node}", str(kept) if kept else None))

    def load_reference_profile(self) -> None:
        """Show the shipped Jetson TX2 profile."""
        self._load_profile_file(asset_path(REFERENCE_PROFILE), "TX2 reference", "tx2")

    def ask_profile_file(self) -> None:
        """Ask for a profile path and load it."""
        self.push_screen(OpenProfileDialog(), lambda path: path and self._load_profile_file(path, str(path)))

    def _load_profile_file(self, path: Path, origin: str, source: str | None = None) -> None:
        self.switch_mode("profile")
        try:
            self.post_message(ProfileReady(load_profile(path), origin, source or str(path)))
        except ProfileError as exc:
            self.post_message(ProfileFailed(str(exc)))

    def on_profile_ready(self, message: ProfileReady) -> None:
        slot = self.profile_slot
        slot.profile, slot.origin, slot.running, slot.error = message.profile, message.origin, None, None
        slot.source = message.source
        self._log(f"profile loaded: {message.origin}", source="profile")
        self._changed(PlanChanged())

    def on_profile_failed(self, message: ProfileFailed) -> None:
        self.profile_slot.running, self.profile_slot.error = None, message.reason
        self._log(message.reason, "error", "profile")
        self.notify(message.reason, title="profile", severity="error", timeout=15)
        self._changed(PlanChanged())

    # -- training -------------------------------------------------------------------------------

    def ask_training(self) -> None:
        """Ask for the run's settings (the profile loaded with ``o`` or ``p`` preselected), then start it."""
        from console.cluster.profiles import board_names

        slot = self.profile_slot
        loaded = (slot.origin, slot.source) if slot.profile is not None and slot.source else None
        choices = profile_choices(self.backend.measured_profiles(), loaded, board_names())
        self.push_screen(TrainDialog(profiles=choices, chosen=slot.source or DEFAULT),
                         lambda request: request and self.start_training(request))

    def start_training(self, request: TrainRequest) -> None:
        """Launch ``litesrl train`` on the backend's cluster and follow its events."""
        if self.training_run is not None and self.training_run.running:
            self.notify("a training run is in progress (x stops it)", severity="warning")
            return
        self.switch_mode("training")
        self._train(request)

    @work(exclusive=True, group="training")
    async def _train(self, request: TrainRequest) -> None:
        out = runs_dir() / f"{datetime.now():%Y%m%d-%H%M%S}-{request.mode}"
        events = out / EVENTS
        run = self.training_run = TrainingRun(request.argv(self.backend.cluster_argument, out), events,
                                              lambda line: self.post_message(LogLine(line, source="train")))
        self.training = TrainingState()
        self.training_process = f"starting {request.mode} training…"
        self._changed(TrainingChanged())
        try:
            await run.start()
        except ConsoleError as exc:
            self.post_message(TrainingExited(-1, str(exc)))
            return
        await self._follow(run, out, "running")

    @work(exclusive=True, group="training")
    async def _reattach(self, run: AttachedRun, out: Path) -> None:
        self.training_run = run
        self.training = TrainingState()
        await self._follow(run, out, "running (reattached)")

    async def _follow(self, run: TrainingRun | AttachedRun, out: Path, what: str) -> None:
        """Post the run's events until it ends, then how it ended."""
        self.training_process = f"{what}, run folder {out}"
        self._changed(TrainingChanged())
        try:
            async for batch in run.follow():
                self.post_message(TrainingEvents(tuple(batch)))
        except ConsoleError as exc:
            self.post_message(LogLine(str(exc), "error", "train"))
            await run.stop()
        code = await run.wait()
        if code != 0 and isinstance(run, TrainingRun):
            discard_empty_run(out)
        self.post_message(TrainingExited(code, run.last_error, reattached=isinstance(run, AttachedRun)))

    def on_training_events(self, message: TrainingEvents) -> None:
        for event in message.events:
            self.training.apply(event)
        self._changed(TrainingChanged())
        self._update_status()

    def on_training_exited(self, message: TrainingExited) -> None:
        if message.returncode == 0:
            self.training_process = "finished"
        elif message.reattached:  # not our child: how it ended comes from its events
            self.training_process = f"reattached training {message.detail or 'ended without finishing (killed or crashed)'}"
        else:
            self.training_process = f"training failed (exit {message.returncode}): {message.detail or 'see logs (4)'}"
        if message.returncode != 0:
            self.notify(self.training_process, title="training", severity="error", timeout=20)
        self._log(self.training_process, "info" if message.returncode == 0 else "error", "train")
        self._changed(TrainingChanged())
        self._update_status()

    def stop_training(self) -> None:
        """Interrupt the run in progress."""
        run = self.training_run
        if run is None or not run.running:
            self.notify("no training run in progress")
            return
        self.training_process = "stopping…"
        self._changed(TrainingChanged())
        self.run_worker(run.stop(), group="training-stop")

    # -- logs and help --------------------------------------------------------------------------

    def on_log_line(self, message: LogLine) -> None:
        self.log_lines.append(message)
        self.log_count += 1
        self._changed(LogsChanged())

    def _log(self, text: str, level: str = "info", source: str = "console") -> None:
        self.post_message(LogLine(text, level, source))

    def action_help(self) -> None:
        """Show the key bindings of the console and of the current screen."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def _changed(self, message) -> None:
        """Tell the active screen (the only one drawing) what changed; others redraw when resumed."""
        if self.screen_stack:  # empty while the app starts or shuts down
            self.screen.post_message(message)
