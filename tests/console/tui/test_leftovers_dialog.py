"""A console start after a console died: a real emulated cluster (one agent) and a stand-in training run it left
running are offered in a dialog, then reused (taken over, followed, stopped with the console) or stopped."""

from __future__ import annotations

import signal

import pytest

from console.cluster.local import down, read_state, up
from console.process_id import ProcessId
from console.services.run_record import RunRecord
from console.services.training_run import AttachedRun, runs_dir
from console.tui.launch import LaunchOptions, create_app
from console.tui.screens.leftovers_dialog import LeftoversDialog
from tests.console.tui.conftest import dead, screen_text, start_stand_in, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def crashed_console(processes):
    """What a killed console leaves: its one-agent cluster and its training run, both still running."""
    gone = dead(processes)
    state = up(1, time_scale=0.05, memory_per_node="1.5GB", memory_accounting="exact", owner=gone)
    folder = runs_dir() / "20250101-000000-dynamic"
    train = start_stand_in(processes, folder)
    RunRecord(ProcessId.of(train.pid), gone, ("litesrl", "train")).write(folder)
    try:
        yield state, train, folder
    finally:
        down()


async def test_reuse_takes_over_the_cluster_and_follows_the_run_until_x_stops_it(crashed_console):
    state, train, folder = crashed_console
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LeftoversDialog) and "Reuse" in screen_text(app))
        text = screen_text(app)
        assert f"training pid {train.pid}" in text and "1 of 1 agent(s)" in text, text
        await pilot.press("r")
        await wait_for(pilot, lambda: len(app.fleet.names) == 1 and app.training.completed == 3)
        assert app.backend.owns_cluster and read_state().owner == ProcessId.me()
        assert isinstance(app.training_run, AttachedRun) and app.training_run.running
        assert app.training_process.startswith("running (reattached)")
        assert RunRecord.read(folder).console == ProcessId.me()  # findable again should this console die
        assert "3/100" in screen_text(app)
        await pilot.press("x")
        await wait_for(pilot, lambda: not app.training_run.running and "stopped early" in app.training_process)
        assert app.training_process == "reattached training stopped early: interrupted"
        assert train.wait(5) == 1
    assert read_state() is None and not any(agent.alive() for agent in state.agents)  # stopped with the console


async def test_stop_leaves_nothing_running(crashed_console):
    state, train, _ = crashed_console
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LeftoversDialog))
        await pilot.press("x")
        await wait_for(pilot, lambda: any("no local cluster is up" in line.text for line in app.log_lines))
        assert app.training_run is None
    assert train.wait(5) == 1 and read_state() is None and not any(agent.alive() for agent in state.agents)


async def test_leave_keeps_them_running_untouched(crashed_console):
    state, train, _ = crashed_console
    app = create_app(LaunchOptions(interval=0.5))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LeftoversDialog))
        await pilot.press("escape")
        await wait_for(pilot, lambda: len(app.fleet.names) == 1)
        assert not app.backend.owns_cluster and app.training_run is None
    assert train.poll() is None and all(agent.alive() for agent in state.agents)
    train.send_signal(signal.SIGINT)
