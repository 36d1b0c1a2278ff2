"""Chain scheduler of DHP (paper 3.3.2, Fig. 4): which node runs which mini-batch at which stage, on plain ids.

Pure bookkeeping (stdlib only, no sockets, no torch): the coordinator drives it with what nodes
report, and ``engine.dhp.simulate`` drives it with simulated time, so one policy serves both.

**Chains.** Every mini-batch forms a chain of one node per stage. A node is *held* by one chain
at a time, from the moment the chain is admitted to it (START on stage 0, a granted hop on later
stages, i.e. before the activation arrives) until its own backward is done; the stage-0 node's
``backward_done`` completes the chain.

* ``dynamic`` (Fig. 4b): a node that finished its forward asks for any node of the next stage
  (``request_next_hop``); if none is free the request waits (arrival order) and a later call that
  frees or adds a node of that stage returns the hop it unblocked.
* ``fixed`` (Fig. 4a, the baseline): ``min_s r_s`` fixed chains, chain ``j`` = the ``j``-th node of
  every stage; nodes past the shortest stage's count stay idle (``idle_nodes``). Losing a node of
  a fixed chain stops the run (``fatal``): a fixed chain cannot re-route.

**Policies** for the next hop in dynamic mode: ``first_free`` (the paper) or ``earliest_finish``
(SWARM-style), defined in ``engine.dhp.policy``. The scheduler times how long each node is held
(its ``clock``) and smooths the compute times fed by ``record_time``; waiting requests are
re-planned whenever a node of their stage frees, joins or is lost.

**Work.** Iteration ``i`` trains on mini-batch ``i`` (its global data step: the agent reads the views
of step ``i``, ``engine.views.batch_indices``, which covers every image once per epoch), so the data
order and the learning-rate schedule match single-machine pretraining step for step. A batch whose
chain is aborted keeps its iteration and is handed out again before any new one. With
``average_every = K`` the scheduler stops admitting new batches after each ``K``-th handed out (and
after the last) and drains; the caller averages once ``drained`` and calls ``end_drain()``.

**Reservations** (overlap, paper 3.3.2): a stage-0 node that has sent its activation on waits for the
rest of its chain; ``reserve(node)`` takes the batch that node will START next, so it can read and
augment it meanwhile. A reserved batch counts as handed out: ``admit`` starts it on that node once it
is free (even while draining, since it was taken before the drain), and it goes back to the queue if
the node is lost.

Stages are 0-based indices in the API; messages for people count from 1, like the paper's partitions.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

from engine.dhp.chain_records import Aborted, ChainRecord, Completed, Freed, Hop, Loss, Start
from engine.dhp.policy import POLICIES, Policy, plan_hops
from engine.errors import EngineError

Mode = Literal["dynamic", "fixed"]
MODES: tuple[str, ...] = ("dynamic", "fixed")


def fixed_chains(stages: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Fixed mode's chains over ``stages``: chain ``j`` is the ``j``-th node of every stage (``min_s r_s`` chains)."""
    return [tuple(stage[j] for stage in stages) for j in range(min(map(len, stages)))] if stages else []


def fixed_successors(stages: Sequence[Sequence[str]]) -> dict[str, str]:
    """Fixed mode's next hop of every node but the last of its chain: known before the run, so a node can hand
    its activation on without asking the coordinator (one round trip less per stage and mini-batch)."""
    return {chain[s]: chain[s + 1] for chain in fixed_chains(stages) for s in range(len(chain) - 1)}


class ScheduleError(EngineError):
    """A scheduler input or call that contradicts its state (unknown node or chain, out-of-order report)."""


class _Chain:
    __slots__ = ("id", "batch", "iteration", "nodes", "held", "waiting", "lane")

    def __init__(self, chain_id: int, batch: int, node: str, lane: int | None) -> None:
        self.id, self.batch, self.iteration = chain_id, batch, batch
        self.nodes: list[str] = [node]
        self.held: set[str] = {node}
        self.waiting = False
        self.lane = lane


class ChainScheduler:
    """Chains of one node per stage over ``stages`` (replica lists such as the paper's 3/2/1)."""

    def __init__(
        self,
        stages: Sequence[Sequence[str]],
        *,
        iterations: int,
        mode: Mode = "dynamic",
        policy: Policy = "first_free",
        first_iteration: int = 0,
        average_every: int = 0,
        smoothing: float = 0.3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``iterations`` is the run's total (iterations ``first_iteration .. iterations-1`` remain);
        ``average_every`` 0 means never drain by itself; ``clock`` returns seconds (earliest_finish)."""
        if mode not in MODES:
            raise ScheduleError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if policy not in POLICIES:
            raise ScheduleError(f"unknown policy {policy!r}; choose one of {', '.join(POLICIES)}")
        lists = [list(stage) for stage in stages]
        if not lists or any(not stage for stage in lists):
            raise ScheduleError(f"every stage needs at least one node, got {lists}")
        names = [node for stage in lists for node in stage]
        if len(set(names)) != len(names):
            raise ScheduleError(f"a node serves one stage only, got {lists}")
        if not 0 <= first_iteration <= iterations:
            raise ScheduleError(f"first iteration {first_iteration} must lie in 0..{iterations}")
        if average_every < 0 or not 0 < smoothing <= 1:
            raise ScheduleError(f"average_every must be >= 0 and smoothing in (0, 1], got {average_every}, {smoothing}")
        self.mode, self.policy = mode, policy
        self._stages = lists
        self._stage_of = {node: s for s, stage in enumerate(lists) for node in stage}
        self._lanes = fixed_chains(lists)
        self._lost: dict[str, int] = {}
        self._holder: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._hold_ms: dict[str, float] = {}
        self._work_ms: dict[str, float] = {}
        self._chains: dict[int, _Chain] = {}
        self._waiting: list[deque[int]] = [deque() for _ in lists]
        self._retry: deque[int] = deque()
        self._next, self._end = first_iteration, iterations
        self._every, self._smoothing, self._clock = average_every, smoothing, clock
        self._boundary = self._next_boundary(first_iteration)
        self._draining = False
        self._fatal: str | None = None
        self._chain_ids = 0
        self._reserved: dict[str, int] = {}
        self.completed = 0
        """Chains completed by this scheduler."""

    @property
    def stages(self) -> tuple[tuple[str, ...], ...]:
        """Live nodes of each stage, in tie-break order."""
        return tuple(tuple(stage) for stage in self._stages)

    @property
    def lanes(self) -> tuple[tuple[str, ...], ...]:
        """The fixed chains (chain j = j-th node of each stage); used in fixed mode only."""
        return tuple(self._lanes)

    @property
    def idle_nodes(self) -> tuple[str, ...]:
        """Nodes fixed mode never uses (beyond the shortest stage's count); empty in dynamic mode."""
        if self.mode == "dynamic":
            return ()
        used = {node for lane in self._lanes for node in lane}
        return tuple(node for stage in self._stages for node in stage if node not in used)

    @property
    def busy(self) -> dict[str, int]:
        """Held nodes and the chain holding each."""
        return dict(self._holder)

    @property
    def lost_nodes(self) -> tuple[str, ...]:
        """Nodes reported lost and not joined again."""
        return tuple(self._lost)

    @property
    def in_flight(self) -> int:
        """Chains admitted and not completed or aborted."""
        return len(self._chains)

    @property
    def remaining(self) -> int:
        """Iterations not yet completed (queued, in flight or new)."""
        return self._end - self._next + len(self._retry) + len(self._chains) + len(self._reserved)

    @property
    def finished(self) -> bool:
        """True when every iteration is completed."""
        return self.remaining == 0

    @property
    def draining(self) -> bool:
        """True while nothing new is admitted (averaging due or ``begin_drain``)."""
        return self._draining

    @property
    def drained(self) -> bool:
        """True when draining and no chain is in flight or reserved: the replicas can be averaged now."""
        return self._draining and not self._chains and not self._reserved

    @property
    def reserved(self) -> dict[str, int]:
        """Stage-0 nodes and the batch each will START next (``reserve``)."""
        return dict(self._reserved)

    @property
    def fatal(self) -> str | None:
        """Why the run cannot continue, or None."""
        return self._fatal

    def chain_info(self, chain: int) -> ChainRecord:
        """Snapshot of chain ``chain``; ScheduleError if it is not in flight."""
        return self._record(self._chain(chain))

    def is_waiting(self, chain: int) -> bool:
        """True while ``chain`` waits for a free node of its next stage."""
        return self._chain(chain).waiting

    def waiting(self, stage: int) -> tuple[int, ...]:
        """Chains waiting for a node of ``stage``, in arrival order."""
        return tuple(self._waiting[stage])

    def mean_work_ms(self, node: str) -> float | None:
        """Smoothed forward + backward ms of ``node`` (from ``record_time``), or None."""
        return self._work_ms.get(node)

    def mean_hold_ms(self, node: str) -> float | None:
        """Smoothed ms ``node`` is held per mini-batch (admission to backward done), or None."""
        return self._hold_ms.get(node)

    def admit(self) -> list[Start]:
        """Chains to start now, one per free stage-0 node (fixed: per fixed chain whose nodes are free)."""
        if self._fatal:
            return []
        if self.mode == "fixed":
            entries = [lane[0] for lane in self._lanes if all(node not in self._holder for node in lane)]
        else:
            entries = [node for node in self._stages[0] if node not in self._holder]
        starts = []
        for node in entries:
            batch = self._reserved.pop(node, None)
            if batch is None and not self._draining:
                batch = self._take()
            if batch is None:
                continue
            self._chain_ids += 1
            lane = next(j for j, lane_nodes in enumerate(self._lanes) if lane_nodes[0] == node) if self.mode == "fixed" else None
            chain = _Chain(self._chain_ids, batch, node, lane)
            self._chains[chain.id] = chain
            self._hold(node, chain.id)
            starts.append(Start(chain.id, node, batch, chain.iteration))
        return starts

    def reserve(self, node: str) -> int | None:
        """Take the batch stage-0 ``node`` will START next (it prepares it while its chain runs on); None when
        no batch is due before the next drain, the node is lost, or the run cannot go on. Asking again returns the
        same batch."""
        if node in self._lost:
            return None
        if self._stage_of.get(node) != 0:
            raise ScheduleError(f"node {node!r} does not serve stage 1; only stage-1 nodes read batches")
        if node in self._reserved:
            return self._reserved[node]
        if self._fatal or self._draining:
            return None
        batch = self._take()
        if batch is not None:
            self._reserved[node] = batch
        return batch

    def request_next_hop(self, chain: int, node: str) -> str | None:
        """``node`` (the chain's last node) finished its forward: the next stage's node now, or None (queued)."""
        c = self._chain(chain)
        if c.nodes[-1] != node or node not in c.held:
            raise ScheduleError(f"node {node!r} is not the last node of chain {chain} (nodes {c.nodes})")
        stage = len(c.nodes) - 1
        if stage == len(self._stages) - 1:
            raise ScheduleError(f"node {node!r} runs the last stage; chain {chain} has no next hop")
        if c.waiting:
            raise ScheduleError(f"chain {chain} already waits for a node of stage {stage + 2}")
        if self.mode == "fixed":
            assert c.lane is not None  # every chain of fixed mode runs on a lane
            target = self._lanes[c.lane][stage + 1]
            if target in self._holder:
                raise ScheduleError(f"fixed chain {c.lane} has its node {target!r} busy with chain {self._holder[target]}")
            self._grant(c, target)
            return target
        c.waiting = True
        self._waiting[stage + 1].append(chain)
        granted = self._dispatch(stage + 1, only=chain)
        return granted[0].to_node if granted else None

    def backward_done(self, chain: int, node: str) -> Freed:
        """``node`` finished its backward of ``chain`` (and sent its gradient): it is free again."""
        c = self._chain(chain)
        if node not in c.held:
            raise ScheduleError(f"node {node!r} does not hold chain {chain} (held by {sorted(c.held)})")
        if len(c.nodes) < len(self._stages):
            raise ScheduleError(f"chain {chain} has not reached the last stage; {node!r} cannot have run its backward")
        stage = c.nodes.index(node)
        later = [m for m in c.nodes[stage + 1 :] if m in c.held]
        if later:
            raise ScheduleError(f"node {node!r} reported its backward of chain {chain} before {later[0]!r} (a later stage)")
        self._release(node)
        c.held.discard(node)
        if stage > 0:
            return Freed(hops=tuple(self._dispatch(stage)))
        del self._chains[chain]
        self.completed += 1
        return Freed(done=Completed(c.id, c.batch, c.iteration, tuple(c.nodes)))

    def record_time(self, node: str, ms: float) -> None:
        """Feed ``node``'s measured forward + backward of one mini-batch (earliest_finish uses the mean).

        A late report from a node already declared lost is ignored; an unknown node is an error.
        """
        if node in self._lost:
            return
        if node not in self._stage_of:
            raise ScheduleError(f"unknown node {node!r}")
        self._smooth(self._work_ms, node, ms)

    def begin_drain(self) -> None:
        """Stop admitting chains (for averaging, a checkpoint or a stop); ``drained`` says when all are done."""
        self._draining = True

    def end_drain(self) -> None:
        """Admit again (after averaging)."""
        self._draining = False

    def replan(self, iterations: int) -> None:
        """Change the run's total iterations (a time budget re-planned it); none handed out can be dropped."""
        if iterations < self._next:
            raise ScheduleError(f"cannot end the run at {iterations} iterations: {self._next} were handed out")
        self._end = iterations
        self._boundary = self._next_boundary(self._next)

    def node_lost(self, node: str) -> Loss:
        """``node`` is gone: abort the chain it held, free that chain's other nodes, requeue its batch."""
        if node not in self._stage_of:
            what = "already lost" if node in self._lost else "unknown"
            raise ScheduleError(f"node {node!r} is {what}")
        stage = self._stage_of.pop(node)
        self._stages[stage].remove(node)
        self._lost[node] = stage
        for table in (self._hold_ms, self._work_ms):
            table.pop(node, None)
        aborted, freed, requeued = [], [], []
        if node in self._reserved:
            requeued.append(self._reserved.pop(node))
            self._retry.append(requeued[-1])
        if node in self._holder:
            c = self._chains[self._holder[node]]
            freed = [member for member in self._drop(c) if member != node]
            aborted.append(self._record(c))
            requeued.append(c.batch)
        lane = next((j for j, lane_nodes in enumerate(self._lanes) if node in lane_nodes), None)
        if self.mode == "fixed" and lane is not None:
            self._fail(f"fixed chain {lane + 1} lost node {node!r}; a fixed chain cannot re-route (paper Fig. 4a)")
        if not self._stages[stage]:
            gone = ", ".join(n for n, s in self._lost.items() if s == stage)
            self._fail(f"stage {stage + 1} of {len(self._stages)} has no nodes left ({gone} lost); its weights are gone")
        hops: list[Hop] = []
        if not self._fatal:
            for s in sorted({self._stage_of[m] for m in freed} | {stage}):
                hops.extend(self._dispatch(s))
        return Loss(node, tuple(aborted), tuple(requeued), tuple(freed), tuple(hops), self._fatal)

    def abort(self, chain: int) -> Aborted:
        """Give up ``chain`` (it stalled: a report never came): free its nodes and requeue its batch.

        The nodes stay in the pool; a node that is really gone is caught by the heartbeats instead.
        """
        c = self._chain(chain)
        freed = self._drop(c)
        hops: list[Hop] = []
        if not self._fatal:
            for s in sorted({self._stage_of[m] for m in freed if m in self._stage_of}):
                hops.extend(self._dispatch(s))
        return Aborted(self._record(c), tuple(freed), tuple(hops))

    def node_joined(self, node: str, stage: int) -> tuple[Hop, ...]:
        """Add ``node`` to ``stage`` (dynamic mode); returns waiting hops it serves at once."""
        if self.mode == "fixed":
            raise ScheduleError(f"node {node!r} cannot join: fixed chains are set when the run starts")
        if node in self._stage_of:
            raise ScheduleError(f"node {node!r} already serves stage {self._stage_of[node] + 1}")
        if not 0 <= stage < len(self._stages):
            raise ScheduleError(f"stage index {stage} is outside 0..{len(self._stages) - 1}")
        self._lost.pop(node, None)
        self._stages[stage].append(node)
        self._stage_of[node] = stage
        return tuple(self._dispatch(stage)) if not self._fatal else ()

    def _chain(self, chain: int) -> _Chain:
        try:
            return self._chains[chain]
        except KeyError:
            raise ScheduleError(f"chain {chain} is not in flight") from None

    def _drop(self, c: _Chain) -> list[str]:
        """Remove ``c`` from flight and from any wait, release what it held, requeue its batch; the freed nodes."""
        del self._chains[c.id]
        held = sorted(c.held, key=c.nodes.index)
        for member in held:
            self._release(member, measure=False)
        if c.waiting:
            self._waiting[len(c.nodes)].remove(c.id)
        self._retry.append(c.batch)
        return held

    def _next_boundary(self, after: int) -> int:
        if not self._every:
            return self._end
        return min(self._end, (after // self._every + 1) * self._every)

    def _take(self) -> int | None:
        if self._retry:
            return self._retry.popleft()
        if self._next >= self._end:
            return None
        batch = self._next
        self._next += 1
        if self._every and self._next == self._boundary:
            self._draining = True
            self._boundary = self._next_boundary(self._next)
        return batch

    def _hold(self, node: str, chain: int) -> None:
        self._holder[node] = chain
        self._since[node] = self._clock()

    def _release(self, node: str, measure: bool = True) -> None:
        """Free ``node``; a completed hold (not an aborted one) feeds its mean hold time."""
        del self._holder[node]
        since = self._since.pop(node)
        if measure and node in self._stage_of:
            self._smooth(self._hold_ms, node, (self._clock() - since) * 1000.0)

    def _smooth(self, table: dict[str, float], node: str, ms: float) -> None:
        old = table.get(node)
        table[node] = ms if old is None else old + self._smoothing * (ms - old)

    def _fail(self, reason: str) -> None:
        if self._fatal is None:
            self._fatal = reason

    def _grant(self, c: _Chain, node: str) -> Hop:
        c.waiting = False
        c.nodes.append(node)
        c.held.add(node)
        self._hold(node, c.id)
        return Hop(c.id, len(c.nodes) - 1, c.nodes[-2], node, c.batch, c.iteration)

    def _dispatch(self, stage: int, only: int | None = None) -> list[Hop]:
        """Grant the waiting requests of ``stage`` whose planned node is free (only ``only``'s, if given)."""
        queue = self._waiting[stage]
        if not queue or self._fatal:
            return []
        nodes = self._stages[stage]
        busy_since = {node: self._since[node] for node in nodes if node in self._holder}
        plan = plan_hops(self.policy, nodes, len(queue), busy_since=busy_since, now=self._clock(),
                         hold_ms=self._hold_ms, work_ms=self._work_ms)
        granted = []
        for chain, node in list(zip(queue, plan)):
            if node is not None and node not in self._holder and only in (None, chain):
                queue.remove(chain)
                granted.append(self._grant(self._chains[chain], node))
        return granted

    @staticmethod
    def _record(c: _Chain) -> ChainRecord:
        return ChainRecord(c.id, c.batch, c.iteration, tuple(c.nodes))
