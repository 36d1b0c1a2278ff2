"""Chain scheduler on plain ids: coverage of every batch, fixed lanes, both policies, faults, drain, join."""

import random

import pytest

from engine.dhp.chain_records import ChainRecord, Completed
from engine.dhp.schedule import ChainScheduler, ScheduleError, fixed_chains, fixed_successors

PAPER = [["n1", "n2", "n3"], ["n4", "n5"], ["n6"]]  # the paper's 3/2/1 (Table 6)


class Clock:
    """A settable clock in seconds, so earliest_finish sees chosen times."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Driver:
    """Plays the per mini-batch protocol against a scheduler in a random (seeded) or FIFO order.

    It keeps its own record of which node holds which chain, to check the scheduler never
    double-books a node, and of every completed batch.
    """

    def __init__(self, scheduler: ChainScheduler, rng: random.Random | None = None, reserve: bool = False) -> None:
        self.s = scheduler
        self.rng = rng
        self.reserve = reserve
        """Reserve each stage-0 node's next batch when its activation leaves (overlap), as the coordinator does."""
        self.actions: list[tuple[str, int, str]] = []  # ("forward", chain, node) | ("backward", chain, node)
        self.holding: dict[str, int] = {}
        self.completed: list[int] = []
        self.records = []
        self.stage = {node: s for s, stage in enumerate(scheduler.stages) for node in stage}

    def _hold(self, node: str, chain: int) -> None:
        assert node not in self.holding, f"{node} double-booked: chain {self.holding.get(node)} and {chain}"
        self.holding[node] = chain

    def admit(self) -> None:
        for start in self.s.admit():
            assert start.batch == start.iteration
            self._hold(start.node, start.chain)
            self.actions.append(("forward", start.chain, start.node))

    def _hops(self, hops) -> None:
        for hop in hops:
            assert self.stage[hop.to_node] == hop.stage and self.stage[hop.from_node] == hop.stage - 1
            self._hold(hop.to_node, hop.chain)
            self.actions.append(("forward", hop.chain, hop.to_node))
            self._reserve(hop.from_node, hop.stage)

    def _reserve(self, node: str, stage: int) -> None:
        if self.reserve and stage == 1:
            batch = self.s.reserve(node)
            assert batch is None or self.s.reserved[node] == batch

    def step(self) -> None:
        index = self.rng.randrange(len(self.actions)) if self.rng else 0
        kind, chain, node = self.actions.pop(index)
        last = len(self.s.stages) - 1
        if kind == "forward":
            if self.stage[node] == last:
                self.actions.append(("backward", chain, node))
                return
            target = self.s.request_next_hop(chain, node)
            if target is not None:
                assert self.stage[target] == self.stage[node] + 1
                self._hold(target, chain)
                self.actions.append(("forward", chain, target))
                self._reserve(node, self.stage[node] + 1)
            return
        info = self.s.chain_info(chain)
        position = info.nodes.index(node)
        freed = self.s.backward_done(chain, node)
        del self.holding[node]
        self._hops(freed.hops)
        if position > 0:
            self.actions.append(("backward", chain, info.nodes[position - 1]))
        if freed.done is not None:
            self.completed.append(freed.done.batch)
            self.records.append(freed.done)
            self.admit()

    def lose(self, node: str):
        loss = self.s.node_lost(node)
        dropped = {a.chain for a in loss.aborted}
        self.actions = [a for a in self.actions if a[1] not in dropped]
        for member in [node, *loss.freed]:
            self.holding.pop(member, None)
        assert all(self.holding.get(n) not in dropped for n in self.holding)
        self._hops(loss.hops)
        self.admit()
        return loss

    def join(self, node: str, stage: int) -> None:
        self.stage[node] = stage
        self._hops(self.s.node_joined(node, stage))
        self.admit()

    def run(self, limit: int = 100_000) -> None:
        self.admit()
        for _ in range(limit):
            if not self.actions:
                return
            self.step()
        raise AssertionError("driver did not finish")


def test_dynamic_321_completes_every_batch_exactly_once_over_three_epochs():
    per_epoch = 20
    s = ChainScheduler(PAPER, iterations=3 * per_epoch)
    d = Driver(s, random.Random(1))
    d.run()
    assert s.finished and s.completed == 3 * per_epoch
    assert sorted(d.completed) == list(range(3 * per_epoch))  # each batch once; epoch e = batches [20e, 20e+20)
    for epoch in range(3):
        in_epoch = sorted(b for b in d.completed if b // per_epoch == epoch)
        assert in_epoch == list(range(epoch * per_epoch, (epoch + 1) * per_epoch))
    assert all(r.iteration == r.batch and len(r.nodes) == 3 for r in d.records)
    assert {r.nodes[2] for r in d.records} == {"n6"} and {r.nodes[0] for r in d.records} == {"n1", "n2", "n3"}


def test_admit_fills_every_free_first_stage_node_and_nothing_more():
    s = ChainScheduler(PAPER, iterations=10)
    starts = s.admit()
    assert [(x.chain, x.node, x.batch) for x in starts] == [(1, "n1", 0), (2, "n2", 1), (3, "n3", 2)]
    assert s.admit() == [] and s.in_flight == 3 and s.remaining == 10


def test_fixed_mode_lanes_alternate_and_extra_nodes_stay_idle():
    s = ChainScheduler([["a", "b"], ["c", "d"], ["e", "f"]], iterations=8, mode="fixed")
    assert s.lanes == (("a", "c", "e"), ("b", "d", "f")) and s.idle_nodes == ()
    d = Driver(s)  # FIFO order: equal durations
    d.run()
    assert [r.nodes for r in d.records] == [("a", "c", "e"), ("b", "d", "f")] * 4
    assert ChainScheduler(PAPER, iterations=1, mode="fixed").idle_nodes == ("n2", "n3", "n5")
    assert ChainScheduler(PAPER, iterations=1).idle_nodes == ()


def test_first_free_takes_the_first_free_node_in_list_order():
    s = ChainScheduler(PAPER, iterations=10)
    c1, c2, c3 = s.admit()
    assert s.request_next_hop(c1.chain, "n1") == "n4"
    assert s.request_next_hop(c2.chain, "n2") == "n5"
    assert s.request_next_hop(c3.chain, "n3") is None  # both busy: waits
    assert s.waiting(1) == (c3.chain,)
    assert s.request_next_hop(c2.chain, "n5") == "n6"
    freed = s.backward_done(c2.chain, "n6")
    assert freed.hops == () and freed.done is None
    freed = s.backward_done(c2.chain, "n5")  # n5 frees and serves the waiting chain at once
    assert [(h.chain, h.from_node, h.to_node, h.stage) for h in freed.hops] == [(c3.chain, "n3", "n5", 1)]
    done = s.backward_done(c2.chain, "n2").done
    assert isinstance(done, Completed) and (done.batch, done.nodes) == (1, ("n2", "n5", "n6"))


def _two_stage(policy: str, clock: Clock) -> ChainScheduler:
    s = ChainScheduler([["a", "b"], ["fast", "slow"]], iterations=10, policy=policy, clock=clock)
    s.record_time("fast", 100.0)
    s.record_time("slow", 1000.0)
    return s


def _measure_fast_hold(s: ChainScheduler, clock: Clock, hold_s: float) -> tuple:
    """Run one chain through ``fast`` held ``hold_s`` seconds; returns the two later starts."""
    first, second = s.admit()
    assert s.request_next_hop(first.chain, "a") == "fast"  # both free: fast finishes first
    clock.t += hold_s
    s.backward_done(first.chain, "fast")
    assert s.backward_done(first.chain, "a").done is not None
    (third,) = s.admit()
    return second, third


def test_earliest_finish_waits_for_a_busy_fast_node_that_finishes_sooner():
    clock = Clock()
    s = _two_stage("earliest_finish", clock)
    second, third = _measure_fast_hold(s, clock, 0.2)
    assert s.mean_hold_ms("fast") == pytest.approx(200.0)
    clock.t = 1.0
    assert s.request_next_hop(third.chain, "a") == "fast"
    clock.t = 1.1  # fast frees in ~100 ms and works 100 ms: done at +200 ms; slow (free) needs 1000 ms
    assert s.request_next_hop(second.chain, "b") is None
    assert "slow" not in s.busy
    clock.t = 1.2
    freed = s.backward_done(third.chain, "fast")
    assert [(h.chain, h.to_node) for h in freed.hops] == [(second.chain, "fast")]


def test_earliest_finish_takes_the_free_slow_node_when_the_fast_one_is_long_busy():
    clock = Clock()
    s = _two_stage("earliest_finish", clock)
    second, third = _measure_fast_hold(s, clock, 5.0)  # fast is held 5 s per mini-batch
    clock.t = 10.0
    assert s.request_next_hop(third.chain, "a") == "fast"
    clock.t = 10.1  # fast frees in ~4.9 s: 4.9 s + 0.1 s > slow's 1 s
    assert s.request_next_hop(second.chain, "b") == "slow"


def test_first_free_takes_the_free_slow_node_in_the_same_situation():
    clock = Clock()
    s = _two_stage("first_free", clock)
    second, third = _measure_fast_hold(s, clock, 0.2)
    clock.t = 1.0
    assert s.request_next_hop(third.chain, "a") == "fast"
    clock.t = 1.1
    assert s.request_next_hop(second.chain, "b") == "slow"


def test_node_lost_mid_chain_requeues_exactly_that_batch():
    s = ChainScheduler(PAPER, iterations=6)
    d = Driver(s)
    d.admit()
    starts = {chain: node for _, chain, node in d.actions}
    d.step()  # chain 1: n1 forward done -> n4
    d.step()  # chain 2: n2 forward done -> n5
    chain1 = next(c for c, n in starts.items() if n == "n1")
    assert s.chain_info(chain1).nodes == ("n1", "n4")
    loss = d.lose("n4")
    assert loss.aborted == (ChainRecord(chain1, 0, 0, ("n1", "n4")),) and not isinstance(loss.aborted[0], Completed)
    assert loss.requeued == (0,) and loss.freed == ("n1",) and loss.fatal is None
    assert s.lost_nodes == ("n4",) and s.stages[1] == ("n5",)
    # n1 was re-admitted by the driver with the requeued batch before any new one
    assert any(s.chain_info(c).batch == 0 and s.chain_info(c).nodes == ("n1",) for c in s.busy.values())
    d.run()
    assert sorted(d.completed) == list(range(6)) and s.completed == 6


def test_requeued_batches_come_before_new_ones():
    s = ChainScheduler(PAPER, iterations=10)
    s.admit()  # batches 0, 1, 2 on n1..n3
    s.request_next_hop(1, "n1")
    s.request_next_hop(2, "n2")
    loss = s.node_lost("n5")  # holds chain 2 (batch 1)
    assert loss.requeued == (1,) and loss.freed == ("n2",)
    assert [(x.node, x.batch) for x in s.admit()] == [("n2", 1)]


def test_a_stalled_chain_given_up_frees_its_nodes_keeps_them_and_requeues_its_batch():
    s = ChainScheduler(PAPER, iterations=10)
    s.admit()  # batches 0, 1, 2 on n1..n3
    assert s.request_next_hop(1, "n1") == "n4"
    assert s.request_next_hop(2, "n2") == "n5"
    assert s.request_next_hop(3, "n3") is None and s.is_waiting(3)  # both stage-2 nodes are taken
    aborted = s.abort(1)
    assert aborted.chain == ChainRecord(1, 0, 0, ("n1", "n4")) and aborted.freed == ("n1", "n4")
    assert [(h.chain, h.to_node) for h in aborted.hops] == [(3, "n4")]  # the waiting chain takes the freed node
    assert not s.is_waiting(3) and s.stages == tuple(map(tuple, PAPER)) and s.lost_nodes == ()
    assert [(x.node, x.batch) for x in s.admit()] == [("n1", 0)]  # its batch first, on the freed stage-1 node
    with pytest.raises(ScheduleError, match="chain 1 is not in flight"):
        s.abort(1)


def test_a_waiting_chain_can_be_given_up_too():
    s = ChainScheduler(PAPER, iterations=10)
    s.admit()
    s.request_next_hop(1, "n1"), s.request_next_hop(2, "n2")
    assert s.request_next_hop(3, "n3") is None
    aborted = s.abort(3)
    assert aborted.freed == ("n3",) and aborted.hops == () and s.waiting(1) == ()
    assert s.remaining == 10


def test_losing_a_free_node_aborts_nothing_but_a_waiting_request_replans():
    s = ChainScheduler(PAPER, iterations=10)
    s.admit()
    assert s.request_next_hop(1, "n1") == "n4"
    loss = s.node_lost("n5")
    assert loss.aborted == () and loss.requeued == () and loss.fatal is None
    assert s.request_next_hop(2, "n2") is None  # n4 is the only stage-1 node left, and busy


def test_fixed_mode_loss_is_fatal_but_an_idle_node_is_not():
    s = ChainScheduler(PAPER, iterations=10, mode="fixed")
    (start,) = s.admit()
    assert s.node_lost("n5").fatal is None  # idle in fixed mode
    assert s.request_next_hop(start.chain, "n1") == "n4"  # the lane's node, always
    loss = s.node_lost("n4")
    assert loss.requeued == (start.batch,)
    assert loss.fatal is not None and "fixed chain 1" in loss.fatal and "'n4'" in loss.fatal
    assert s.fatal == loss.fatal and s.admit() == []


def test_a_stage_without_nodes_stops_the_run():
    s = ChainScheduler(PAPER, iterations=10)
    loss = s.node_lost("n6")
    assert loss.fatal == "stage 3 of 3 has no nodes left (n6 lost); its weights are gone"
    assert s.admit() == []
    with pytest.raises(ScheduleError, match="already lost"):
        s.node_lost("n6")


def test_auto_drain_every_k_and_manual_drain():
    s = ChainScheduler(PAPER, iterations=10, average_every=4)
    d = Driver(s)
    d.admit()
    assert s.in_flight == 3 and not s.draining
    while s.in_flight and not s.draining:
        d.step()
    assert s.draining  # the 4th batch was handed out
    while d.actions:
        d.step()
    assert s.drained and s.completed == 4 and s.admit() == []
    s.end_drain()
    d.admit()
    while d.actions:
        d.step()
    assert s.completed == 8 and s.drained
    s.end_drain()
    d.run()
    assert s.completed == 10 and s.finished and s.drained  # drains after the last batch too
    manual = ChainScheduler(PAPER, iterations=10)
    manual.admit()
    manual.begin_drain()
    assert manual.admit() == [] and not manual.drained


def test_resume_starts_at_first_iteration_and_keeps_absolute_averaging_points():
    s = ChainScheduler(PAPER, iterations=10, first_iteration=6, average_every=4)
    assert [x.batch for x in s.admit()] == [6, 7]
    assert s.draining and s.remaining == 4


def test_a_joining_node_serves_a_waiting_chain_at_once():
    s = ChainScheduler(PAPER, iterations=10)
    s.admit()
    s.request_next_hop(1, "n1")
    s.request_next_hop(2, "n2")
    assert s.request_next_hop(3, "n3") is None
    hops = s.node_joined("n7", 1)
    assert [(h.chain, h.to_node) for h in hops] == [(3, "n7")]
    assert s.stages[1] == ("n4", "n5", "n7")
    s.node_lost("n5")
    assert s.node_joined("n5", 1) == () and s.lost_nodes == ()
    with pytest.raises(ScheduleError, match="already serves"):
        s.node_joined("n5", 0)
    with pytest.raises(ScheduleError, match="cannot join"):
        ChainScheduler(PAPER, iterations=1, mode="fixed").node_joined("n9", 0)


def test_protocol_violations_are_refused():
    s = ChainScheduler(PAPER, iterations=10)
    s.admit()
    with pytest.raises(ScheduleError, match="not the last node"):
        s.request_next_hop(1, "n2")
    with pytest.raises(ScheduleError, match="has not reached the last stage"):
        s.backward_done(1, "n1")
    s.request_next_hop(1, "n1")
    s.request_next_hop(1, "n4")
    with pytest.raises(ScheduleError, match="no next hop"):
        s.request_next_hop(1, "n6")
    with pytest.raises(ScheduleError, match="before 'n6'"):
        s.backward_done(1, "n4")
    with pytest.raises(ScheduleError, match="chain 99 is not in flight"):
        s.chain_info(99)
    for bad, match in (
        (dict(stages=[["a"], []]), "at least one node"),
        (dict(stages=[["a"], ["a"]]), "one stage only"),
        (dict(stages=[["a"]], mode="ring"), "unknown mode"),
        (dict(stages=[["a"]], policy="fastest"), "unknown policy"),
    ):
        stages = bad.pop("stages")
        with pytest.raises(ScheduleError, match=match):
            ChainScheduler(stages, iterations=1, **bad)


@pytest.mark.parametrize("seed", range(25))
def test_random_event_orders_with_faults_keep_the_invariants(seed):
    rng = random.Random(seed)
    policy = "first_free" if seed % 2 else "earliest_finish"
    clock = Clock()
    stages = [[f"s{s}n{i}" for i in range(rng.randint(1, 3))] for s in range(rng.randint(2, 4))]
    iterations = rng.randint(5, 40)
    s = ChainScheduler(stages, iterations=iterations, policy=policy, clock=clock, average_every=rng.choice([0, 3, 7]))
    d = Driver(s, rng, reserve=seed % 4 < 2)
    d.admit()
    lost: list[tuple[str, int]] = []
    for _ in range(20_000):
        clock.t += rng.random()
        if s.drained and not s.finished:
            s.end_drain()
            d.admit()
        if not d.actions and s.finished:
            break
        roll = rng.random()
        if roll < 0.03:
            candidates = [n for st in s.stages if len(st) > 1 for n in st]
            if candidates:
                node = rng.choice(candidates)
                lost.append((node, d.stage[node]))
                assert d.lose(node).fatal is None
                continue
        if roll < 0.06 and lost:
            d.join(*lost.pop(rng.randrange(len(lost))))
            continue
        if d.actions:
            d.step()
            if rng.random() < 0.5:
                d.s.record_time(rng.choice([n for st in s.stages for n in st]), rng.uniform(1, 100))
    assert s.finished, f"stalled: {s.remaining} left, {len(d.actions)} actions"
    assert sorted(d.completed) == list(range(iterations))  # each batch completed exactly once
    assert d.holding == {} and s.busy == {} and s.in_flight == 0 and s.reserved == {}


@pytest.mark.parametrize("seed", range(5))
def test_random_event_orders_in_fixed_mode_keep_every_chain_on_its_lane(seed):
    stages = [["a", "b", "x"], ["c", "d"], ["e", "f", "g"]]
    s = ChainScheduler(stages, iterations=30, mode="fixed")
    d = Driver(s, random.Random(seed), reserve=seed % 2 == 0)
    d.run()
    assert sorted(d.completed) == list(range(30))
    assert {r.nodes for r in d.records} == {("a", "c", "e"), ("b", "d", "f")}
    assert s.idle_nodes == ("x", "g")


def test_hold_times_are_measured_on_completion_only():
    clock = Clock()
    s = ChainScheduler([["a"], ["b"]], iterations=5, clock=clock)
    (first,) = s.admit()
    s.request_next_hop(first.chain, "a")
    clock.t = 0.4
    s.backward_done(first.chain, "b")
    clock.t = 1.0
    s.backward_done(first.chain, "a")
    assert s.mean_hold_ms("a") == pytest.approx(1000.0) and s.mean_hold_ms("b") == pytest.approx(400.0)
    (second,) = s.admit()
    s.request_next_hop(second.chain, "a")
    clock.t = 1.1
    s.node_lost("b")  # aborts after 100 ms: not a hold time of a
    assert s.mean_hold_ms("a") == pytest.approx(1000.0) and s.mean_hold_ms("b") is None


def test_a_reserved_batch_starts_on_its_node_next_and_counts_as_handed_out():
    s = ChainScheduler(PAPER, iterations=5, average_every=4)
    starts = s.admit()
    assert [x.batch for x in starts] == [0, 1, 2]
    n1 = starts[0]
    assert s.request_next_hop(n1.chain, "n1") == "n4"
    assert s.reserve("n1") == 3 and s.reserve("n1") == 3  # asking again keeps the same batch
    assert s.draining and s.reserve("n2") is None  # batch 3 was the 4th handed out: drain before batch 4
    with pytest.raises(ScheduleError, match="does not serve stage 1"):
        s.reserve("n4")
    d = Driver(s)
    d.holding = {"n1": n1.chain, "n4": n1.chain, "n2": starts[1].chain, "n3": starts[2].chain}
    d.actions = [("forward", n1.chain, "n4"), ("forward", starts[1].chain, "n2"), ("forward", starts[2].chain, "n3")]
    while s.in_flight and s.reserved:
        d.step()
        assert not s.drained or not s.reserved  # never drained while a reserved batch waits
    assert "n1" in d.holding and s.chain_info(d.holding["n1"]).batch == 3  # n1 was admitted with its batch
    while d.actions:
        d.step()
    assert s.drained and s.completed == 4 and s.remaining == 1


def test_a_lost_node_gives_its_reserved_batch_back():
    s = ChainScheduler(PAPER, iterations=10)
    first = s.admit()[0]
    s.request_next_hop(first.chain, "n1")
    assert s.reserve("n1") == 3 and s.remaining == 10
    loss = s.node_lost("n1")
    assert 3 in loss.requeued and s.reserved == {} and s.remaining == 10
    later = ChainScheduler(PAPER, iterations=10)
    later.admit()
    assert later.reserve("n2") == 3


def test_a_replanned_run_ends_at_its_new_total_and_keeps_its_averaging_boundaries():
    s = ChainScheduler(PAPER, iterations=100, average_every=10)
    d = Driver(s)
    d.admit()
    s.begin_drain()  # a time budget wants a new plan: drain, then re-plan
    while d.actions:
        d.step()
    assert s.drained and s.completed == 3
    with pytest.raises(ScheduleError, match="3 were handed out"):
        s.replan(2)
    s.replan(14)
    s.end_drain()
    d.admit()
    while d.actions:
        d.step()
    assert s.completed == 10 and s.drained and not s.finished  # the boundary at 10 still holds
    s.end_drain()
    d.run()
    assert s.completed == 14 and s.finished and sorted(d.completed) == list(range(14))


def test_fixed_successors_follow_the_fixed_chains():
    assert fixed_chains([["a", "d"], ["b", "e"], ["c", "f"]]) == [("a", "b", "c"), ("d", "e", "f")]
    assert fixed_successors([["a", "d"], ["b", "e"], ["c", "f"]]) == {"a": "b", "b": "c", "d": "e", "e": "f"}
    # 3/2/1: one fixed chain; the nodes past the shortest stage have no successor (fixed mode leaves them idle).
    assert fixed_successors([["a", "b", "c"], ["d", "e"], ["f"]]) == {"a": "d", "d": "f"}
    assert fixed_successors([["a"]]) == {}
