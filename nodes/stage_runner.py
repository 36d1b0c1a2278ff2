"""One node's part of each DHP chain: forward, hand-off, backward and weight update, paced on an emulated board.

Compute runs in one worker thread (the event loop keeps answering pings, telemetry and data while a
stage computes) and one step at a time. On an emulated board each step is stretched to its target
(``engine.dhp.emulation``) and each hand-off is delivered when the emulated link would deliver it.
A node sends one message at a time (one network link), so its sends queue behind each other.

With ``overlap`` (paper 3.3.2) a node reports its backward done as soon as its gradient is on the
wire and can take the next chain while the gradient travels, and a stage-1 node builds the batch that
NEXT_HOP names (``prepare``) while it waits for the rest of its chain.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from engine.dhp.batches import StageOneData
from engine.dhp.emulation import Emulation
from engine.dhp.protocol import Op
from engine.dhp.stage import MOMENTUM_PREFIX, StageWorker
from nodes.errors import NodeError
from nodes.peers import PeerPool
from nodes.tensor_checks import check_received, check_state

log = logging.getLogger(__name__)

ABORTED_KEPT = 4096
Report = Callable[[Op, dict[str, Any]], Awaitable[None]]
"""Sends a report to the coordinator (dropped when no coordinator is attached)."""


@dataclass
class _Chain:
    """What this node holds of one chain."""

    batch: int
    iteration: int
    reply_to: tuple[str, int, str] | None
    """``(host, port, node)`` the input gradient goes back to; None on stage 1."""
    output: torch.Tensor | None = None
    """The activation waiting for NEXT_HOP."""
    sent: tuple[torch.dtype, tuple[int, ...]] | None = None
    """dtype and shape of the activation handed on: its gradient must come back alike."""
    timing: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("data_ms", "forward_ms", "backward_ms", "compute_ms", "overrun_ms", "send_ms"), 0.0))
    prepare: int | None = None
    """Stage 1 with a fixed successor: the batch to build once this chain's forward is done (START named it)."""
    aborted: bool = False


class StageRunner:
    """Runs the chains of one assigned stage on this node."""

    def __init__(
        self,
        *,
        node: str,
        index: int,
        count: int,
        worker: StageWorker,
        emulation: Emulation | None,
        data: StageOneData | None,
        address: tuple[str, int],
        peers: PeerPool,
        report: Report,
        overlap: bool = False,
        plan: dict[str, tuple[str, int]] | None = None,
        successor: str | None = None,
        max_chains: int = 64,
    ) -> None:
        self.node, self.index, self.count = node, index, count
        self.overlap = overlap
        self.worker = worker
        self.emulation = emulation
        self.data = data
        self.address = address
        self._peers = peers
        self._report = report
        self.plan = dict(plan or {})
        """``node -> (host, port)`` of every node of the assigned plan: the only addresses this node dials."""
        if successor is not None and successor not in self.plan:
            raise NodeError(f"successor {successor} is not a node of the assigned plan")
        self.successor = successor
        """Fixed chains: the node each activation goes to, without waiting for NEXT_HOP."""
        self.max_chains = max_chains
        """Most chains held at once (the memory budget's share per chain); more are refused."""
        self._chains: dict[int, _Chain] = {}
        self._aborted: OrderedDict[int, None] = OrderedDict()
        """Chains this run gave up (the latest :data:`ABORTED_KEPT`): an activation of one that arrives
        after its ABORT is dropped."""
        self._compute = asyncio.Lock()
        self._uplink = asyncio.Lock()
        """Held while a message is on this node's link."""
        self._views = threading.Lock()
        """Batch building seeds torch's global generator (``engine.views``): one build at a time."""
        self._prepared: dict[int, asyncio.Task] = {}
        """Batches being built ahead of their START (overlap), by batch."""
        self._tasks: set[asyncio.Task] = set()

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1

    def in_plan(self, node: str, host: str, port: int) -> bool:
        """Whether ``node`` at ``host:port`` is a node of the assigned plan (the only places this node dials)."""
        return self.plan.get(node) == (host, port)

    @property
    def chains(self) -> list[int]:
        """Chains this node holds now."""
        return list(self._chains)

    # -- entry points (called by the agent for each message) -------------------------------------

    def start(self, chain: int, batch: int, iteration: int, prepare: int | None = None) -> None:
        """START: build mini-batch ``batch`` from the local dataset and run the stage-1 forward (then, with a fixed
        successor, build batch ``prepare`` while the rest of the chain runs)."""
        if self.data is None:
            raise NodeError(f"{self.node} runs stage {self.index + 1}, which reads no data; START goes to stage 1")
        self._chains[chain] = _Chain(batch, iteration, None, prepare=prepare)
        self._spawn(chain, self._start(chain, batch))

    def activation(self, chain: int, batch: int, iteration: int, reply_to: tuple[str, int, str], x: torch.Tensor) -> None:
        """ACTIVATION: the previous stage's output for ``chain``."""
        if self.index == 0:
            raise NodeError(f"{self.node} runs stage 1, which takes no activation")
        if chain in self._aborted:  # ABORT travels on the control link and may overtake the activation
            log.info("activation for chain %d, which was aborted; dropped", chain)
            return
        if len(self._chains) >= self.max_chains and chain not in self._chains:
            raise NodeError(f"{self.node} holds {len(self._chains)} chains, the most its memory budget allows")
        check_received(x, "activation", finite=True)
        self._chains[chain] = _Chain(batch, iteration, reply_to)
        log.debug("chain %d: activation of batch %d from %s", chain, batch, reply_to[2])
        self._spawn(chain, self._forward(chain, lambda: x))

    def next_hop(self, chain: int, node: str, host: str, port: int, prepare: int | None = None) -> None:
        """NEXT_HOP: deliver the activation of ``chain`` to ``node``; on stage 1, start building batch ``prepare``."""
        if not self.in_plan(node, host, port):
            raise NodeError(f"NEXT_HOP to {node} at {host}:{port}, which is not a node of the assigned plan")
        state = self._held(chain)
        if state is None or state.output is None:
            raise NodeError(f"NEXT_HOP for chain {chain}, which has no activation waiting on {self.node}")
        self._spawn(chain, self._hand_off(chain, state, node, host, port))
        if prepare is not None:
            self._prepare(prepare)

    def gradient(self, chain: int, grad: torch.Tensor) -> None:
        """GRADIENT: the next stage's gradient of our output; run backward and pass it on."""
        state = self._held(chain)
        if state is None:
            log.info("gradient for chain %d, which this node no longer holds (aborted); dropped", chain)
            return
        if state.sent is None:
            raise NodeError(f"gradient for chain {chain}, whose activation {self.node} has not sent")
        check_received(grad, "gradient", dtype=state.sent[0], shape=state.sent[1], finite=True)
        log.debug("chain %d: gradient received", chain)
        self._spawn(chain, self._backward(chain, grad))

    async def abort(self, chain: int) -> None:
        """ABORT: forget ``chain`` (its autograd state too)."""
        self._aborted[chain] = None
        while len(self._aborted) > ABORTED_KEPT:
            self._aborted.popitem(last=False)
        state = self._chains.pop(chain, None)
        if state is not None:
            state.aborted = True
        async with self._compute:
            self.worker.discard(chain)

    async def abort_all(self) -> None:
        """Forget every chain (the coordinator went away)."""
        for chain in list(self._chains):
            await self.abort(chain)

    async def state_dict(self, momentum: bool = False) -> dict[str, torch.Tensor]:
        """The stage's parameters and BN buffers (and SGD momentum), between two steps."""
        async with self._compute:
            return self.worker.state_dict(momentum)

    async def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load parameters and BN buffers (and momentum), between two steps, once each entry has checked out."""
        async with self._compute:
            module = self.worker.module
            reference = {**module.state_dict(),
                         **{MOMENTUM_PREFIX + name: p for name, p in module.named_parameters()}}
            check_state(state, reference, "parameters")
            self.worker.load_state_dict(state)

    async def close(self) -> None:
        """Cancel the chains in progress and the batches being built."""
        for task in [*self._tasks, *self._prepared.values()]:
            task.cancel()
        await asyncio.gather(*self._tasks, *self._prepared.values(), return_exceptions=True)
        self._prepared.clear()

    # -- the steps --------------------------------------------------------------------------------

    async def _start(self, chain: int, batch: int) -> None:
        """Stage 1: take batch ``batch`` (built ahead, or now), then run the forward."""
        state = self._held(chain)
        if state is None:
            return
        started = time.monotonic()
        ahead = self._prepared.pop(batch, None)
        for stale in self._prepared.values():  # batches named for STARTs that went elsewhere
            stale.cancel()
        self._prepared.clear()
        views = await (ahead if ahead is not None else self._build(batch))
        state.timing["data_ms"] = (time.monotonic() - started) * 1000
        paced = self.emulation is not None and self.emulation.data_s > 0
        # Without a data time of its own, building the batch counts in the forward, as the profile measured it.
        await self._forward(chain, lambda: views, None if paced else started)

    async def _build(self, batch: int) -> torch.Tensor:
        """Build mini-batch ``batch`` in a thread (the event loop keeps serving), paced to the board's data time."""
        started = time.monotonic()

        data = self.data
        assert data is not None, "only stage 1 builds batches"

        def build() -> torch.Tensor:
            with self._views:
                return data.views(batch)

        views = await asyncio.to_thread(build)
        if self.emulation is not None and self.emulation.data_s > 0:
            await self.emulation.stretch(started, self.emulation.data_s)
        return views

    async def _forward(self, chain: int, make_input: Callable[[], torch.Tensor], started: float | None = None) -> None:
        state = self._held(chain)
        if state is None:
            return
        started = time.monotonic() if started is None else started
        out = await self._compute_step(chain, state, lambda: self.worker.forward(chain, make_input()))
        await self._stretch(state, started, self.emulation.forward_s if self.emulation else 0.0)
        state.timing["forward_ms"] = (time.monotonic() - started) * 1000
        if state.aborted:
            return
        if self.is_last:
            await self._backward(chain, None, loss=float(out))
            return
        state.output = out
        log.debug("chain %d: forward done", chain)
        report: dict[str, Any] = {"chain": chain, "ms": state.timing["forward_ms"]}
        if self.successor is not None:  # a fixed chain: hand on now, tell the coordinator where it went
            host, port = self.plan[self.successor]
            self._spawn(chain, self._hand_off(chain, state, self.successor, host, port))
            if state.prepare is not None:
                self._prepare(state.prepare)
            report["to"] = self.successor
        await self._report(Op.FORWARD_DONE, report)

    def _prepare(self, batch: int) -> None:
        """Start building stage-1 batch ``batch`` (the one this node STARTs next) while its chain runs on."""
        if self.data is None or batch in self._prepared:
            return
        task = asyncio.get_running_loop().create_task(self._build(batch))
        task.add_done_callback(_retrieve)  # an unused failed build must not log "never retrieved"
        self._prepared[batch] = task

    async def _hand_off(self, chain: int, state: _Chain, node: str, host: str, port: int) -> None:
        header = {"chain": chain, "batch": state.batch, "iteration": state.iteration,
                  "reply_to": {"host": self.address[0], "port": self.address[1], "node": self.node}}
        output, state.output = state.output, None
        assert output is not None, "next_hop checked it"
        state.sent = (output.dtype, tuple(output.shape))
        target = self.emulation.activation_send_s if self.emulation else 0.0
        if await self._send(chain, state, node, host, port, Op.ACTIVATION, header, output, target):
            log.debug("chain %d: activation sent to %s", chain, node)

    async def _backward(self, chain: int, grad: torch.Tensor | None, loss: float | None = None) -> None:
        state = self._held(chain)
        if state is None:
            return
        started = time.monotonic()
        early: list[asyncio.Task] = []
        hand_back = None
        if state.reply_to is not None and self.emulation is None:
            # Real compute: the gradient goes back while this stage runs its optimiser step (an emulated board
            # sends it once its stretched backward is over, as the board would).
            loop = asyncio.get_running_loop()
            host, port, node = state.reply_to

            def send(input_grad: torch.Tensor) -> None:
                early.append(loop.create_task(
                    self._send(chain, state, node, host, port, Op.GRADIENT, {"chain": chain}, input_grad, 0.0)))

            def hand_back(input_grad: torch.Tensor) -> None:  # called in the compute thread
                loop.call_soon_threadsafe(send, input_grad)

        input_grad = await self._compute_step(
            chain, state, lambda: self.worker.backward(chain, grad, state.iteration, hand_back))
        await self._stretch(state, started, self.emulation.backward_s if self.emulation else 0.0)
        state.timing["backward_ms"] = (time.monotonic() - started) * 1000
        header: dict[str, Any] = {"chain": chain, "timing": state.timing}
        if loss is not None:
            header["loss"] = loss
        if early:  # the compute thread's hand-back ran before this await resumed (the loop's callbacks are FIFO)
            sending = early[0]
            self._spawn(chain, sending)  # failures are reported; close() cancels it
            if state.aborted:
                return
            if self.overlap or await asyncio.shield(sending):
                await self._done(chain, header)
            return
        if state.aborted:
            return
        if state.reply_to is None:
            await self._done(chain, header)
            return
        host, port, node = state.reply_to
        target = self.emulation.gradient_send_s if self.emulation else 0.0
        if self.overlap:  # free for the next chain while the gradient travels
            await self._done(chain, header)
            self._spawn(chain, self._send(chain, state, node, host, port, Op.GRADIENT, {"chain": chain}, input_grad, target))
        elif await self._send(chain, state, node, host, port, Op.GRADIENT, {"chain": chain}, input_grad, target):
            await self._done(chain, header)

    async def _done(self, chain: int, header: dict[str, Any]) -> None:
        self._chains.pop(chain, None)
        log.debug("chain %d: backward done", chain)
        await self._report(Op.BACKWARD_DONE, header)

    # -- helpers ----------------------------------------------------------------------------------

    def _held(self, chain: int) -> _Chain | None:
        state = self._chains.get(chain)
        return None if state is None or state.aborted else state

    def _spawn(self, chain: int, step: Awaitable[object]) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(chain, step))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, chain: int, step: Awaitable[object]) -> None:
        try:
            await step
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug or a torch error must not kill the agent: report it, keep serving
            log.exception("chain %d failed on %s", chain, self.node)
            await self._report(Op.FAILED, {"chain": chain, "reason": f"{type(exc).__name__}: {exc}"})

    async def _compute_step(self, chain: int, state: _Chain, work: Callable[[], Any]) -> Any:
        async with self._compute:
            began = time.monotonic()
            result = await asyncio.to_thread(work)
            state.timing["compute_ms"] += (time.monotonic() - began) * 1000
            if state.aborted:  # aborted while computing: drop what the step left behind
                self.worker.discard(chain)
        return result

    async def _stretch(self, state: _Chain, started: float, target_s: float) -> None:
        if self.emulation is not None and target_s > 0:
            state.timing["overrun_ms"] += await self.emulation.stretch(started, target_s) * 1000

    async def _send(self, chain: int, state: _Chain, node: str, host: str, port: int, op: Op, header: dict,
                    tensor: torch.Tensor, target_s: float) -> bool:
        """Put one message on this node's link once it is free, paced to ``target_s``; False if not delivered."""
        queued = time.monotonic()
        async with self._uplink:
            await self._stretch(state, time.monotonic(), target_s)
            if state.aborted or chain in self._aborted or not await self._deliver(chain, node, host, port, op, header, tensor):
                return False
        log.debug("chain %d: %s sent to %s", chain, op.value, node)
        state.timing["send_ms"] += (time.monotonic() - queued) * 1000
        return True

    async def _deliver(self, chain: int, node: str, host: str, port: int, op: Op, header: dict, tensor: torch.Tensor) -> bool:
        """Send to a peer; on failure report FAILED naming the peer (the coordinator decides) and return False."""
        try:
            await self._peers.send(host, port, op, header, [tensor], node=node)
            return True
        except NodeError as exc:
            log.warning("chain %d: cannot send %s to %s at %s:%d: %s", chain, op.value, node, host, port, exc)
            await self._report(Op.FAILED, {"chain": chain, "peer": node, "reason": f"cannot reach {node}: {exc}"})
            return False


def _retrieve(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()
