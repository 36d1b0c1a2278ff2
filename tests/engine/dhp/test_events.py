"""DHP events: JSON round trips, the JSON-lines log, subscribers, whole-file and tailing readers."""

import json
import logging

import pytest

from engine.dhp.events import (
    EVENT_TYPES,
    Averaging,
    ChainAborted,
    ChainDone,
    ChainLink,
    EventError,
    EventLog,
    EventTail,
    Iteration,
    NodeJoined,
    NodeLost,
    NodeState,
    NodeSummary,
    RunFinished,
    RunStarted,
    parse_line,
    read_events,
)

EXAMPLES = [
    RunStarted(0.0, "dynamic", "first_free", (("n1", "n2", "n3"), ("n4", "n5"), ("n6",)), 1000, 100),
    NodeState(0.01, "n4", 1, "busy"),
    ChainLink(0.5, 7, 6, 0, None, "n1"),
    ChainLink(1.5, 7, 6, 1, "n1", "n5"),
    ChainDone(3.0, 7, 6, ("n1", "n5", "n6"), -0.42, 2750.0),
    Iteration(3.0, 6, 6, -0.42, 2750.0, ("n1", "n5", "n6")),
    Averaging(4.0, "start", 100),
    Averaging(4.2, "done", 100, 200.0),
    NodeLost(5.0, "n5", "heartbeat timeout", (11, 12)),
    ChainAborted(5.5, 14, 13, ("n2", "n4"), "no report for 120 s (chain reached n2, n4)"),
    NodeJoined(6.0, "n5", 1),
    RunFinished(7.0, 1000, 2750.0, {"n6": NodeSummary(2, 1000, 922.0)}),
    RunFinished(7.0, 12, 30.0, {}, "fixed chain 1 lost node 'n4'"),
]


def test_every_event_type_round_trips():
    assert {type(e).TYPE for e in EXAMPLES} == set(EVENT_TYPES)
    for event in EXAMPLES:
        line = event.to_json()
        data = json.loads(line)
        assert list(data)[:2] == ["type", "t"] and "\n" not in line
        assert parse_line(line) == event


def test_json_shape_matches_the_design():
    assert json.loads(EXAMPLES[3].to_json()) == {
        "type": "chain_link", "t": 1.5, "chain": 7, "batch": 6, "stage": 1, "from_node": "n1", "to_node": "n5",
    }
    assert json.loads(EXAMPLES[11].to_json())["per_node"] == {"n6": {"stage": 2, "iterations": 1000, "mean_ms": 922.0}}


def test_log_writes_lines_and_feeds_subscribers(tmp_path, caplog):
    path = tmp_path / "run" / "events.jsonl"
    seen, also = [], []

    def broken(event):
        raise RuntimeError("UI fell over")

    with EventLog(path) as log:
        log.subscribe(broken)
        unsubscribe = log.subscribe(seen.append)
        log.subscribe(also.append)
        with caplog.at_level(logging.ERROR):
            for event in EXAMPLES[:4]:
                log.emit(event)
                assert path.read_text().count("\n") == len(also)  # on disk as soon as emit returns
        unsubscribe()
        for event in EXAMPLES[4:]:
            log.emit(event)
    assert seen == EXAMPLES[:4] and also == EXAMPLES
    assert "UI fell over" in caplog.text
    assert read_events(path) == EXAMPLES
    with EventLog(path) as log:  # appends
        log.emit(EXAMPLES[0])
    assert len(read_events(path)) == len(EXAMPLES) + 1


def test_a_log_without_a_file_still_feeds_subscribers():
    seen = []
    log = EventLog()
    log.subscribe(seen.append)
    log.emit(EXAMPLES[1])
    log.close()
    assert seen == [EXAMPLES[1]]


def test_reader_names_the_line_of_a_bad_event(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(EXAMPLES[0].to_json() + "\n" + '{"type":"teleport","t":1}\n')
    with pytest.raises(EventError, match=r"events.jsonl:2: unknown event type 'teleport'"):
        read_events(path)
    path.write_text('{"type":"node_joined","t":1,"node":"n1"}\n')
    with pytest.raises(EventError, match=r":1: node_joined event missing \['stage'\]"):
        read_events(path)
    path.write_text('{"type":"node_joined","t":1,"node":"n1","stage":0,"x":1}\n')
    with pytest.raises(EventError, match=r"unknown field\(s\) \['x'\]"):
        read_events(path)
    path.write_text("not json\n")
    with pytest.raises(EventError, match=":1: not JSON"):
        read_events(path)
    path.write_text(EXAMPLES[1].to_json())
    with pytest.raises(EventError, match=":1: incomplete last line"):
        read_events(path)
    with pytest.raises(EventError, match="cannot read"):
        read_events(tmp_path / "absent.jsonl")


def test_tail_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []  # not there yet
    log = EventLog(path)
    log.emit(EXAMPLES[0])
    assert tail.poll() == [EXAMPLES[0]]
    assert tail.poll() == []
    line = EXAMPLES[1].to_json() + "\n"
    with open(path, "a") as handle:  # a writer caught mid-line
        handle.write(line[:10])
    assert tail.poll() == []
    with open(path, "a") as handle:
        handle.write(line[10:])
    log.emit(EXAMPLES[2])
    assert tail.poll() == [EXAMPLES[1], EXAMPLES[2]]
    with open(path, "a") as handle:
        handle.write('{"type":"bogus","t":0}\n')
    with pytest.raises(EventError, match="events.jsonl:4: unknown event type"):
        tail.poll()
    log.close()


def test_a_fresh_log_starts_the_file_over_and_a_tail_follows(tmp_path):
    """A new run in the folder of a stopped one (no checkpoint, so not resumed) must not carry its events on."""
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    with EventLog(path) as log:
        for event in EXAMPLES[:5]:
            log.emit(event)
    assert tail.poll() == EXAMPLES[:5]
    with EventLog(path, fresh=True) as log:
        log.emit(EXAMPLES[5])
        assert read_events(path) == [EXAMPLES[5]]
        assert tail.poll() == [EXAMPLES[5]]  # the shorter file is read from its start again
        with open(path, "a") as handle:
            handle.write('{"type":"bogus","t":0}\n')
        with pytest.raises(EventError, match="events.jsonl:2: unknown event type"):  # numbered in the new file
            tail.poll()
