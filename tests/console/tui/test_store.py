"""The fleet store: link states, readings, history, staleness and the emulated-node figures."""

from __future__ import annotations

from console.fleet.ssh import LinkState, NodeStatus
from console.services.backend import AgentLoad, NodeInfo, Reading
from console.services.store import HISTORY, FleetStore
from tests.console.tui.scripted import jetson_sample

INFO = NodeInfo("tx2-1", "tx2", "nvidia@10.0.0.1:22", 4 * 2**30)


def store() -> FleetStore:
    s = FleetStore()
    s.set_nodes([INFO, NodeInfo("tx2-2", "tx2", "x", 2**30)])
    return s


def test_nodes_start_not_connected_and_a_reading_brings_them_up():
    s = store()
    view = s.get("tx2-1")
    assert view.state(0.0, 5.0) is LinkState.UNREACHABLE and view.latest is None
    assert s.apply_reading(Reading("tx2-1", jetson_sample(20.0), None, 100.0))
    assert view.state(101.0, 5.0) is LinkState.UP and view.status.ok


def test_an_up_node_turns_stale_when_readings_stop():
    s = store()
    s.apply_reading(Reading("tx2-1", jetson_sample(20.0), None, 100.0))
    view = s.get("tx2-1")
    assert view.state(104.9, 5.0) is LinkState.UP
    assert view.state(105.1, 5.0) is LinkState.STALE and round(view.age(105.1), 6) == 5.1
    assert s.count_up(105.1, 5.0) == 0


def test_status_changes_are_reported_once_and_unknown_nodes_ignored():
    s = store()
    failed = NodeStatus("tx2-2", LinkState.AUTH_FAILED, "refused key")
    assert s.apply_status(failed) and not s.apply_status(failed)
    assert not s.apply_status(NodeStatus("ghost", LinkState.UP))
    assert not s.apply_reading(Reading("ghost", jetson_sample(1.0)))
    assert s.get("tx2-2").state(0, 5) is LinkState.AUTH_FAILED


def test_history_is_bounded_and_figures_follow_the_board_sample():
    s = store()
    for i in range(HISTORY + 10):
        s.apply_reading(Reading("tx2-1", jetson_sample(float(i % 50)), None, float(i)))
    view = s.get("tx2-1")
    assert len(view.history) == HISTORY
    cpu = view.figure("cpu")
    assert cpu[-1] == (49 + 50 + 51 + 52) / 4  # the last reading (i = 249), online cores only
    assert view.figure("temp")[-1] == 48.5 and view.figure("power")[-1] == 5200.0
    assert view.memory_mb() == (3100.0, 7850.0)


def test_an_emulated_node_is_its_agent_process():
    s = store()
    agent = AgentLoad(pid=42, cpu_percent=87.5, rss_bytes=2**30, threads=3)
    s.apply_reading(Reading("tx2-1", jetson_sample(5.0), agent, 1.0))
    view = s.get("tx2-1")
    assert view.figure("cpu") == [87.5]
    assert view.figure("ram") == [25.0]  # 1 GiB of a 4 GiB budget
    assert view.memory_mb() == (1024.0, 4096.0)


def test_redeclaring_nodes_keeps_the_history_of_those_that_stay():
    s = store()
    s.apply_reading(Reading("tx2-1", jetson_sample(5.0), None, 1.0))
    s.set_nodes([INFO, NodeInfo("tx2-9", "tx2", "y", 2**30)])
    assert s.names == ["tx2-1", "tx2-9"] and len(s.get("tx2-1").history) == 1
