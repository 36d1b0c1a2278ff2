"""The DHP coordinator (paper 3.3, Fig. 4): assigns CWB's stages to nodes and drives fixed or dynamic chains.

It talks to nodes only through :class:`engine.dhp.protocol.NodeLink` (``nodes/client.py`` implements it
over TCP), so the engine never imports ``nodes/``. Everything a node reports lands in one queue that
a single loop consumes, so the chain scheduler (``engine.dhp.schedule``) is driven from one task::

    coordinator = Coordinator(links, addresses, settings, events=EventLog("run.jsonl"))
    infos = await coordinator.attach()
    plan = plan_run(profile, coordinator.pool(), network, mode=settings.mode)
    result = await coordinator.run(plan, profile)     # RunResult; events stream meanwhile
    await coordinator.close()

Every wait has a timeout: requests (``request_timeout``), node liveness (heartbeats), and the loop
itself (``stall_timeout``). Faults are handled in :mod:`engine.dhp.faults`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from engine.cwb.nodes_spec import NodeSpec
from engine.cwb.profile_format import Profile
from engine.deadline import within
from engine.dhp.assign import assign_all
from engine.dhp.chain_records import Completed, Hop
from engine.dhp.channel import NodeChannel
from engine.dhp.checkpoints import load_run, save_run, stage_states, stored_momentum
from engine.dhp.events import (
    Averaging,
    ChainDone,
    ChainLink,
    Event,
    EventLog,
    Iteration,
    NodeState,
    NodeSummary,
    RunFinished,
    RunStarted,
)
from engine.dhp.faults import FaultHandler
from engine.dhp.plan import RunPlan
from engine.dhp.protocol import Message, NodeLink, Op
from engine.dhp.schedule import ChainScheduler, ScheduleError
from engine.dhp.settings import RunSettings
from engine.dhp.sync import average_round, push_schedule
from engine.errors import CheckpointError, EngineError
from engine.heap import map_large_blocks, release_free_memory
from engine.lr_schedule import BudgetPlanner

log = logging.getLogger(__name__)

Reconnect = Callable[[str], Awaitable[NodeLink]]
"""Opens a fresh link to a node by name (to let a restarted node rejoin); raises LinkError."""


@dataclass(frozen=True)
class RunResult:
    """How a run ended."""

    step: int
    """Iterations of the run completed in total (a resumed run counts its earlier part)."""
    completed: int
    """Iterations completed by this call."""
    seconds: float
    """Wall time of this call's training loop."""
    per_node: dict[str, NodeSummary]
    """Paper Tables 5-6: each node's stage, iterations and mean forward + backward per mini-batch."""
    reason: str | None = None
    """Why the run stopped early (None: it completed)."""
    checkpoint: Path | None = None
    """The last checkpoint written, if any."""
    final_loss: float | None = None
    """Loss of the last completed iteration."""
    normalisation: tuple[list[float], list[float]] | None = None
    """Channel mean and std of the stage-1 dataset."""

    @property
    def ms_per_iteration(self) -> float:
        """Wall time per completed iteration."""
        return self.seconds * 1000 / self.completed if self.completed else math.inf


@dataclass
class _Tally:
    stage: int
    iterations: int = 0
    steps: int = 0
    total_ms: float = 0.0


@dataclass
class _Flight:
    """A chain in flight as the coordinator sees it."""

    started: float
    progress: float
    """When the chain was last heard of (admitted, forward done, a hop granted, a backward applied)."""
    loss: float = math.nan
    reported: set[str] = field(default_factory=set)
    """Members whose BACKWARD_DONE has been applied."""
    early: dict[str, Message] = field(default_factory=dict)
    """BACKWARD_DONE reports that arrived before a later stage's (applied once it has been)."""
    data_ms: float = 0.0
    """Stage 1's wait for the mini-batch (from its BACKWARD_DONE timing)."""


class Coordinator:
    """Drives one training run over attached node agents."""

    def __init__(self, links: Mapping[str, NodeLink], addresses: Mapping[str, tuple[str, int]], settings: RunSettings,
                 *, events: EventLog | None = None, reconnect: Reconnect | None = None) -> None:
        """``links``: a control link per node; ``addresses``: where *peers* reach each node (NEXT_HOP)."""
        missing = sorted(set(links) - set(addresses))
        if missing:
            raise EngineError(f"no peer address for node(s) {', '.join(missing)}")
        self.settings = settings
        self.events = events or EventLog()
        self.addresses = dict(addresses)
        self.run_id = uuid.uuid4().hex[:12]
        self._reconnect = reconnect
        self._queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue()
        self.channels: dict[str, NodeChannel] = {name: self._channel(link) for name, link in links.items()}
        self._t0 = time.monotonic()
        self._rejoins: dict[str, asyncio.Task] = {}
        self._scheduler: ChainScheduler | None = None
        self._first = 0
        self._done: set[int] = set()
        """Iterations completed in this run."""
        self._flight: dict[int, _Flight] = {}
        """Chains in flight, by chain id."""
        self._checkpoint: Path | None = None
        self._last_loss: float | None = None
        self._stop: str | None = None
        self._faults = FaultHandler(self)

    @property
    def _sched(self) -> ChainScheduler:
        """The run's chain scheduler (made by :meth:`run`)."""
        if self._scheduler is None:
            raise EngineError("the run has not started: no chain scheduler yet")
        return self._scheduler

    # -- setup ------------------------------------------------------------------------------------

    def _channel(self, link: NodeLink) -> NodeChannel:
        return NodeChannel(link, lambda node, msg: self._queue.put_nowait(("msg", node, msg)),
                           lambda node, reason: self._queue.put_nowait(("lost", node, reason)))

    async def attach(self) -> dict[str, dict[str, Any]]:
        """ATTACH every node; returns each node's description (budget, emulated board, data path)."""
        names = list(self.channels)
        results = await asyncio.gather(*(self.channels[n].attach(self.run_id, self.settings.request_timeout) for n in names),
                                       return_exceptions=True)
        for name, result in zip(names, results):
            if isinstance(result, BaseException):
                raise EngineError(f"cannot attach {name}: {result}") if not isinstance(result, EngineError) else result
        return {name: self.channels[name].info for name in names}

    def pool(self) -> list[NodeSpec]:
        """The attached nodes as CWB sees them: memory budget, and speed of an emulated board (else 1)."""
        specs = []
        for name, channel in self.channels.items():
            board = channel.info.get("emulated")
            speed = float(board["speed"]) if board else 1.0
            specs.append(NodeSpec(name, int(channel.info["memory_budget"]), speed, "emulated" if board else "board"))
        return specs

    @property
    def step(self) -> int:
        """Iterations of the run completed so far (a resumed run counts its earlier part)."""
        return self._first + len(self._done)

    @property
    def iterations(self) -> int:
        """The run's planned iterations (a time budget re-plans them)."""
        return self.settings.iterations

    @property
    def in_flight(self) -> int:
        """Chains admitted and not yet completed or aborted."""
        return self._scheduler.in_flight if self._scheduler is not None else 0

    def request_stop(self, reason: str = "stopped on request") -> None:
        """Stop admitting chains; once the chains in flight are done, average, checkpoint and end the run."""
        self._stop = reason
        if self._scheduler is not None:
            self._sched.begin_drain()
        self._queue.put_nowait(("wake", "", None))

    def data_readers(self) -> list[str]:
        """Nodes that can run stage 1: a data path from the run or their own ``--data``."""
        s = self.settings
        return [name for name, ch in self.channels.items() if s.data.path or s.data_paths.get(name) or ch.info.get("data")]

    # -- the run ----------------------------------------------------------------------------------

    async def run(self, plan: RunPlan, profile: Profile, *, resume: bool = False) -> RunResult:
        """Assign ``plan``'s stages and train until the run's iterations are done or it cannot go on."""
        map_large_blocks()  # averaging rounds' state dicts would otherwise stay in the heap: RSS in steps
        s = self.settings
        first, elapsed, whole = 0, 0.0, None
        if resume:
            if s.out_dir is None:
                raise CheckpointError("resume needs the run's output folder")
            stored = load_run(s.out_dir, s)
            if list(stored["dhp"]["cuts"]) != plan.model_cuts:
                raise CheckpointError(f"the checkpoint cuts the model at units {stored['dhp']['cuts']}; plan with those cuts")
            first, elapsed, whole = int(stored["step"]), float(stored.get("elapsed_seconds", 0.0)), stored["model"]
            if s.time_budget is not None:  # continue the schedule the budget had planned
                s = self.settings = replace(s, optim=replace(s.optim, total_steps=int(stored["pretrain_config"]["steps"])))
        self.plan, self.profile = plan, profile
        self._previous = stage_states(s.model, plan.model_cuts, whole, s.seed)
        initial = self._previous
        if resume:  # the stages continue with their SGD momentum too
            initial = [{**state, **momentum} for state, momentum in zip(initial, stored_momentum(stored, len(initial)))]
        described = await assign_all(self.channels, s, plan, profile, initial, self.addresses)
        self._dataset = next(iter(described.values()))
        self._stage_of = {node: i for i, nodes in enumerate(plan.stages) for node in nodes}
        self._tally = {node: _Tally(i) for node, i in self._stage_of.items()}
        self._scheduler = ChainScheduler(plan.stages, iterations=s.iterations, mode=s.mode, policy=s.policy,
                                         first_iteration=first, average_every=s.average_every)
        self._first, self._done, self._flight = first, set(), {}
        self._elapsed0, self._checkpoint, self._last_loss = elapsed, None, None
        self._budget = BudgetPlanner(s.time_budget, s.optim.warmup_steps) if s.time_budget is not None else None
        self._replan: int | None = None
        self._averaged_at: dict[str, int] = {}
        """Each node's completed iterations at the last averaging (what the weighted average counts from)."""
        self.rejoined_from: dict[str, dict[str, torch.Tensor]] = {}
        """The live replica's state each node that rejoined since the last averaging started from."""
        self._next_checkpoint = first + s.checkpoint_every if s.checkpoint_every else s.iterations
        for channel in self.channels.values():  # spares too: an agent closes a link silent for 5 minutes
            channel.start_heartbeat(s.heartbeat_interval, s.heartbeat_timeout)
        self._t0 = time.monotonic()
        self._emit(RunStarted, mode=s.mode, policy=s.policy, stages=plan.stages, iterations=s.iterations,
                   average_every=s.average_every)
        for node, stage in self._stage_of.items():
            self._emit(NodeState, node=node, stage=stage, state="idle")
        try:
            reason = await self._loop()
        finally:
            for task in self._rejoins.values():
                task.cancel()
        seconds = time.monotonic() - self._t0
        if reason:
            await self._abort_in_flight()
        per_node = {n: NodeSummary(t.stage, t.iterations, t.total_ms / t.steps if t.steps else 0.0)
                    for n, t in self._tally.items()}
        self._emit(RunFinished, iterations=first + len(self._done), seconds=seconds, per_node=per_node, reason=reason)
        return RunResult(first + len(self._done), len(self._done), seconds, per_node, reason, self._checkpoint,
                         self._last_loss, (self._dataset["mean"], self._dataset["std"]))

    async def close(self) -> None:
        """Close every channel; the agents keep running for the next run."""
        for task in self._rejoins.values():
            task.cancel()
        await asyncio.gather(*(channel.close() for channel in self.channels.values()))

    async def _loop(self) -> str | None:
        sched = self._sched
        await self._admit()
        heard = time.monotonic()
        while True:
            if sched.fatal:
                return sched.fatal
            if self._stop is not None:
                sched.begin_drain()
            if sched.drained or sched.finished:
                await self._apply_budget_plan()
                failure = await self._average_and_checkpoint()
                if failure or sched.finished:
                    return failure
                if self._stop is not None:
                    return f"{self._stop} at iteration {self.step}"
                sched.end_drain()
                await self._admit()
                continue
            try:
                kind, node, payload = await within(self._queue.get(), self._wait_s(heard))
            except asyncio.TimeoutError:
                if time.monotonic() - heard >= self.settings.stall_timeout:
                    return (f"no node reported anything for {self.settings.stall_timeout:g} s "
                            f"with {sched.in_flight} chain(s) in flight")
                await self._faults.abort_stalled()
                await self._admit()
                continue
            heard = time.monotonic()
            try:
                await self._handle(kind, node, payload)
            except ScheduleError as exc:  # a late report of an aborted chain
                log.info("ignoring a report from %s: %s", node, exc)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("ignoring a malformed report from %s: %s: %s", node, type(exc).__name__, exc)
            await self._admit()

    def _wait_s(self, heard: float) -> float:
        """How long the loop may wait for the next report: until the run stalls or the oldest chain times out."""
        now, limit = time.monotonic(), self._faults.chain_limit()
        deadline = heard + self.settings.stall_timeout
        if limit and self._flight:
            deadline = min(deadline, min(f.progress for f in self._flight.values()) + limit)
        return max(0.01, deadline - now)

    async def _handle(self, kind: str, node: str, payload: Any) -> None:
        if kind == "wake":
            return
        if kind == "lost":
            await self._faults.node_lost(node, payload)
        elif kind == "joined":
            await self._faults.node_joined(node, payload)
        elif payload.op is Op.FORWARD_DONE:
            await self._forward_done(node, payload)
        elif payload.op is Op.BACKWARD_DONE:
            await self._backward_done(node, payload)
        elif payload.op is Op.FAILED:
            await self._faults.failed(node, payload)
        else:
            log.debug("%s sent %s outside a request", node, payload.op.value)

    async def _admit(self) -> None:
        starts = self._sched.admit()
        for start in starts:
            now = time.monotonic()
            self._flight[start.chain] = _Flight(now, now)
            self._emit(NodeState, node=start.node, stage=0, state="busy")
            self._emit(ChainLink, chain=start.chain, batch=start.batch, stage=0, from_node=None, to_node=start.node)
        for start in starts:  # reservations after every start, so batches go out in the order single-process takes them
            header = {"chain": start.chain, "batch": start.batch, "iteration": start.iteration}
            if self.settings.mode == "fixed" and self.settings.overlap and len(self.plan.stages) > 1:
                # A fixed chain's stage-1 node hands its activation on unasked (no NEXT_HOP to carry ``prepare``).
                batch = self._sched.reserve(start.node)
                if batch is not None:
                    header["prepare"] = batch
            await self.channels[start.node].send(Op.START, header)

    async def _forward_done(self, node: str, message: Message) -> None:
        chain = int(message.header["chain"])
        info = self._sched.chain_info(chain)
        self._flight[chain].progress = time.monotonic()
        target = self._sched.request_next_hop(chain, node)
        sent_to = message.header.get("to")  # a fixed chain's node already handed its activation on
        if sent_to is not None and sent_to != target:
            raise ScheduleError(f"{node} handed chain {chain} to {sent_to}, but its next hop is {target}")
        if target is not None:
            await self._hop(Hop(chain, len(info.nodes), node, target, info.batch, info.iteration), tell=sent_to is None)

    async def _hop(self, hop: Hop, tell: bool = True) -> None:
        """Record ``hop`` and, unless its node made it unasked (``tell`` False), send it the NEXT_HOP."""
        flight = self._flight.get(hop.chain)
        if flight is not None:
            flight.progress = time.monotonic()
        self._emit(NodeState, node=hop.to_node, stage=hop.stage, state="busy")
        self._emit(ChainLink, chain=hop.chain, batch=hop.batch, stage=hop.stage, from_node=hop.from_node, to_node=hop.to_node)
        if not tell:
            return
        host, port = self.addresses[hop.to_node]
        header: dict[str, Any] = {"chain": hop.chain, "node": hop.to_node, "host": host, "port": port}
        if hop.stage == 1 and self.settings.overlap:  # the stage-1 node reads its next batch while it waits
            batch = self._sched.reserve(hop.from_node)
            if batch is not None:
                header["prepare"] = batch
        await self.channels[hop.from_node].send(Op.NEXT_HOP, header)

    async def _backward_done(self, node: str, message: Message) -> None:
        """Apply a BACKWARD_DONE in backward order: reports travel on different connections, so a node's may
        overtake the report of the later stage whose gradient it received; it then waits for that one."""
        chain = int(message.header["chain"])
        flight = self._flight.get(chain)
        if flight is None:
            raise ScheduleError(f"chain {chain} is not in flight")
        flight.early[node] = message
        flight.progress = time.monotonic()
        while chain in self._flight:
            unreported = [n for n in self._sched.chain_info(chain).nodes if n not in flight.reported]
            if not unreported or unreported[-1] not in flight.early:
                return
            due = unreported[-1]
            await self._apply_backward(chain, due, flight.early.pop(due))

    async def _apply_backward(self, chain: int, node: str, message: Message) -> None:
        timing = message.header.get("timing") or {}
        ms = float(timing.get("forward_ms", 0.0)) + float(timing.get("backward_ms", 0.0))
        freed = self._sched.backward_done(chain, node)
        flight = self._flight[chain]
        flight.reported.add(node)
        if self._stage_of.get(node) == 0:
            flight.data_ms = float(timing.get("data_ms", 0.0))
        if message.header.get("loss") is not None:
            flight.loss = float(message.header["loss"])
        self._sched.record_time(node, ms)
        tally = self._tally[node]
        tally.steps, tally.total_ms = tally.steps + 1, tally.total_ms + ms
        self._emit(NodeState, node=node, stage=self._stage_of[node], state="idle")
        for hop in freed.hops:
            await self._hop(hop)
        if freed.done is not None:
            self._complete(freed.done)

    def _complete(self, done: Completed) -> None:
        flight = self._flight.pop(done.chain)
        ms = (time.monotonic() - flight.started) * 1000
        self._done.add(done.iteration)
        self._last_loss = flight.loss
        for member in done.nodes:
            self._tally[member].iterations += 1
        self._emit(ChainDone, chain=done.chain, batch=done.batch, nodes=done.nodes, loss=flight.loss, ms=ms,
                   data_ms=flight.data_ms)
        self._emit(Iteration, iteration=done.iteration, batch=done.batch, loss=flight.loss, ms=ms, nodes=done.nodes)
        if self._budget is not None and self._replan is None:
            elapsed = self._elapsed0 + time.monotonic() - self._t0
            self._replan = self._budget.replan(self.step, elapsed, self.settings.iterations)
            if self._replan is not None:  # drain first, so that every chain of an iteration runs one schedule
                self._sched.begin_drain()

    async def _apply_budget_plan(self) -> None:
        """Give the scheduler and every node the iteration count the time budget re-planned (drained)."""
        total, self._replan = self._replan, None
        if total is None or self._sched.finished:
            return
        total = max(total, self.step)  # chains that were in flight when the plan was made have completed since
        self.settings = replace(self.settings, optim=replace(self.settings.optim, total_steps=total))
        self._sched.replan(total)
        await push_schedule([self.channels[n] for n in self._stage_of], self.settings.optim, self.settings.request_timeout)
        log.info("time budget %.0f s: planning %d iterations at iteration %d", self.settings.time_budget, total, self.step)

    async def _average_and_checkpoint(self) -> str | None:
        """Average the replicas (drained), then checkpoint when one is due; returns a failure reason or None."""
        sched, s = self._sched, self.settings
        step = self._first + len(self._done)
        replicas = [[self.channels[n] for n in nodes] for nodes in sched.stages]
        due = s.out_dir is not None and (sched.finished or self._stop is not None or step >= self._next_checkpoint)
        if not due and all(len(r) <= 1 for r in replicas):
            return None
        began, averaging = time.monotonic(), any(len(r) > 1 for r in replicas)
        if averaging:
            self._emit(Averaging, phase="start", iteration=step)
        batches = {n: t.iterations - self._averaged_at.get(n, 0) for n, t in self._tally.items()}
        try:
            self._previous, momentum, spread = await average_round(
                replicas, self._previous, s.request_timeout, momentum=due,
                batches=batches if s.average_weighting == "batches" else None, summed=s.average_weighting == "sum",
                bases=self.rejoined_from)
        except EngineError as exc:
            return str(exc)
        members = {n for nodes in sched.stages for n in nodes}
        self.rejoined_from = {n: state for n, state in self.rejoined_from.items() if n not in members}
        self._averaged_at = {n: t.iterations for n, t in self._tally.items()}
        if averaging:
            self._emit(Averaging, phase="done", iteration=step, ms=(time.monotonic() - began) * 1000,
                       divergence=tuple(round(d, 8) for d in spread))
        if due and s.out_dir is not None and self._done == set(range(self._first, step)):
            norm = (torch.tensor(self._dataset["mean"]), torch.tensor(self._dataset["std"]))
            elapsed = self._elapsed0 + time.monotonic() - self._t0
            self._checkpoint = save_run(s.out_dir, s, self.plan.model_cuts, self._previous, norm, step, elapsed,
                                        self.plan.to_dict(), momentum)
            while self._next_checkpoint <= step:
                self._next_checkpoint += s.checkpoint_every or s.iterations
            log.info("checkpoint at iteration %d: %s", step, self._checkpoint)
        release_free_memory()  # the round's small tensors leave holes in the heap: give those pages back
        return None

    async def _abort_in_flight(self) -> None:
        """Tell the members of every unfinished chain to drop it (the run stopped)."""
        for node, chain in self._sched.busy.items():
            await self.channels[node].send(Op.ABORT, {"chain": chain})

    def _emit(self, kind: type[Event], **values: Any) -> None:
        self.events.emit(kind(t=round(time.monotonic() - self._t0, 6), **values))
