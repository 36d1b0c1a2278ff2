"""Leftovers of a console that died, found and stopped on real processes (``sleep`` standing in for the
console, the agents and the training run; a stand-in training that writes real events)."""

from __future__ import annotations

import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from console.cluster.local import STATE_NAME, Agent, ClusterState, read_state, state_dir
from console.process_id import ProcessId, stop_group
from console.services.leftovers import find_leftovers, stop_leftovers
from console.services.run_record import RECORD, RunRecord
from console.services.training_run import EVENTS, OUTPUT, AttachedRun, discard_empty_run, runs_dir
from engine.io import atomic_write_json
from tests.console.tui.conftest import dead, start_stand_in


def record_cluster(agents: list[subprocess.Popen], owner: ProcessId | None) -> ClusterState:
    state = ClusterState(tuple(Agent(f"node-{i}", p.pid, ProcessId.of(p.pid).created, "127.0.0.1", 7000 + i, 1.0,
                                     "1GB", "/dev/null") for i, p in enumerate(agents, start=1)),
                         "tx2", 0.05, "1Gbit", "0ms", "/dev/null", "/dev/null", owner=owner)
    atomic_write_json(state_dir() / STATE_NAME, state.to_dict())
    return state


def record_run(name: str, process: ProcessId, console: ProcessId) -> Path:
    folder = runs_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    RunRecord(process, console, ("litesrl", "train")).write(folder)
    return folder


def test_a_cluster_whose_console_is_gone_is_a_leftover_and_stopping_ends_its_agents(processes):
    agents = [processes(), processes()]
    state = record_cluster(agents, dead(processes))
    found = find_leftovers()
    assert found and found.cluster == state and found.cluster_complete and found.runs == ()
    assert "2 of 2 agent(s) running" in found.lines()[0]
    done = stop_leftovers(found)
    assert done == ["node-1: stopped", "node-2: stopped"]
    assert not any(agent.alive() for agent in state.agents) and read_state() is None


def test_a_cluster_whose_console_runs_or_that_cluster_up_started_is_not_a_leftover(processes):
    agents = [processes()]
    record_cluster(agents, ProcessId.of(processes().pid))
    assert not find_leftovers()
    state = record_cluster(agents, None)
    assert not find_leftovers()
    old = state.to_dict()
    del old["owner"]  # a state file from before owners were recorded
    atomic_write_json(state_dir() / STATE_NAME, old)
    assert read_state().owner is None and not find_leftovers()


def test_an_owner_pid_now_held_by_another_process_counts_as_gone(processes):
    live = ProcessId.of(processes().pid)
    record_cluster([processes()], replace(live, created=live.created - 100))  # same pid, other start time
    assert find_leftovers().cluster is not None


def test_a_cluster_whose_agents_all_died_is_not_offered(processes):
    agents = [processes()]
    record_cluster(agents, dead(processes))
    agents[0].kill()
    agents[0].wait()
    assert not find_leftovers()  # nothing runs: the backend replaces the stale state as before


def test_a_run_still_training_after_its_console_died_is_orphaned_and_can_be_stopped(processes):
    gone = dead(processes)
    orphan = processes()
    folder = record_run("20250101-000000-dynamic", ProcessId.of(orphan.pid), gone)
    record_run("20250101-000100-dynamic", ProcessId.of(processes().pid), ProcessId.me())  # its console still runs
    record_run("20250101-000200-fixed", dead(processes), gone)  # ended: nothing to stop
    (runs_dir() / "20250101-000300-fixed").mkdir()  # launched before records were written
    (runs_dir() / "20250101-000400-fixed").mkdir()
    (runs_dir() / "20250101-000400-fixed" / RECORD).write_text("{not json")  # damaged: ignored
    found = find_leftovers()
    assert found.cluster is None and [run.folder for run in found.runs] == [folder]
    assert found.runs[0].record.console == gone and found.runs[0].events == folder / EVENTS
    assert stop_leftovers(found) == [f"training pid {orphan.pid}: stopped"]
    assert orphan.wait(5) == -signal.SIGINT and not find_leftovers()


def test_stopping_a_run_escalates_to_sigterm_when_sigint_is_ignored(processes):
    stubborn = processes([sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                                "print('ready', flush=True)\ntime.sleep(60)"], stdout=subprocess.PIPE)
    stubborn.stdout.readline()
    assert stop_group(ProcessId.of(stubborn.pid), grace=0.3) == "stopped"
    assert stubborn.wait(5) == -signal.SIGTERM
    other = processes()
    assert stop_group(replace(ProcessId.of(other.pid), created=0.0)) == "not running"  # a reused pid: untouched
    assert other.poll() is None


def test_a_failed_start_leaves_no_folder_but_a_run_with_events_stays(tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    for name in (EVENTS, *OUTPUT):
        (failed / name).write_text("" if name == EVENTS else "error: no cluster\n")
    assert discard_empty_run(failed) and not failed.exists()


async def test_a_reattached_run_is_followed_until_its_process_goes_and_its_end_read_from_its_events(processes):
    folder = runs_dir() / "20250101-000000-dynamic"
    stand_in = start_stand_in(processes, folder)
    record = RunRecord(ProcessId.of(stand_in.pid), dead(processes), ("litesrl", "train"))
    lines: list[str] = []
    run = AttachedRun(record, folder / EVENTS, lines.append)
    seen: list = []
    async for batch in run.follow():
        iterated = sum(event.TYPE == "iteration" for event in seen)
        seen += batch
        if iterated < 3 <= sum(event.TYPE == "iteration" for event in seen):
            assert run.running
            stand_in.send_signal(signal.SIGUSR1)  # it completes by itself
    assert [event.TYPE for event in seen] == ["run_started", "iteration", "iteration", "iteration", "run_finished"]
    assert await run.wait() == 0 and run.last_error == "stand-in: waiting" and not run.running
    assert lines == ["stand-in: 3 iterations done", "stand-in: waiting"]


async def test_stopping_a_reattached_run_interrupts_it_and_says_so(processes):
    folder = runs_dir() / "20250101-000000-dynamic"
    stand_in = start_stand_in(processes, folder)
    run = AttachedRun(RunRecord(ProcessId.of(stand_in.pid), dead(processes), ()), folder / EVENTS, lambda _: None)
    async for batch in run.follow():
        if any(event.TYPE == "iteration" for event in batch):
            break
    await run.stop(grace=5)
    assert await run.wait() == 1 and run.last_error == "stopped early: interrupted"
    other = runs_dir() / "20250101-000100-dynamic"
    killed = start_stand_in(processes, other)
    run = AttachedRun(RunRecord(ProcessId.of(killed.pid), dead(processes), ()), other / EVENTS, lambda _: None)
    killed.kill()
    killed.wait()
    assert await run.wait() is None  # no run_finished of its own: how it ended is unknown


async def test_a_run_launched_here_is_recorded_and_its_output_read_from_files(tmp_path):
    from console.services.training_run import TrainingRun

    folder = runs_dir() / "20250101-000000-fixed"
    lines: list[str] = []
    script = "import sys, time; print('planning', flush=True); time.sleep(0.5); sys.exit('error: no cluster')"
    run = TrainingRun([sys.executable, "-c", script], folder / EVENTS, lines.append)
    await run.start()
    record = RunRecord.read(folder)
    assert record.process.pid == run.pid and record.console == ProcessId.me() and record.argv[-1] == script
    assert [batch async for batch in run.follow()] == []
    assert await run.wait() == 1 and run.last_error == "error: no cluster"
    assert lines == ["planning", "error: no cluster"]
    assert discard_empty_run(folder) and not folder.exists()  # a failed start leaves no folder behind
