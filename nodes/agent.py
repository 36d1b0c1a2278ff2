"""The node agent: one TCP port serving the coordinator's control connection and peers' data connections.

Every connection is authenticated with the cluster secret (``nodes.wire.serve``). The first ATTACH on a
connection makes it the control connection (a later ATTACH from a new coordinator replaces it); data
ops (ACTIVATION, GRADIENT) and PING are served on any connection. A malformed message closes only the
connection it came on, with the reason logged; the agent keeps serving the others.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.cwb.units import format_bytes
from engine.dhp.batches import DataSettings, StageOneData
from engine.dhp.emulation import Emulation, StageMemory
from engine.dhp.protocol import Message, Op, pack_state, unpack_state
from engine.dhp.stage import StageSpec, StageWorker
from engine.errors import ConfigError, EngineError
from engine.optim import OptimConfig
from nodes.agent_telemetry import LatestSample
from nodes.control import field as need
from nodes.control import recv_op, send_op
from nodes.errors import NodeError, ProtocolError
from nodes.peers import PeerPool
from nodes.stage_runner import StageRunner
from nodes.telemetry.process import resident_bytes
from nodes.wire import Connection, ConnectionClosed, Server, TransportTimeout, serve

log = logging.getLogger(__name__)

CONTROL_OPS = frozenset({Op.ASSIGN, Op.START, Op.NEXT_HOP, Op.ABORT, Op.GET_PARAMS, Op.SET_PARAMS,
                         Op.TELEMETRY, Op.SHUTDOWN})


@dataclass(frozen=True)
class EmulatedBoard:
    """How this agent pretends to be a profiled board (``--emulate``)."""

    speed: float = 1.0
    """Compute speed relative to the profiled board: a stage takes profile time / speed."""
    time_scale: float = 1.0
    """Every emulated duration is multiplied by this (0.1 runs ten times faster than the board)."""
    bandwidth: float = 125e6
    """Emulated link rate, bytes/s (1 Gbit/s = 125e6)."""
    latency_ms: float = 0.0
    """Emulated one-way latency of each message, ms."""


@dataclass(frozen=True)
class AgentConfig:
    """Everything ``litesrl-node`` is started with."""

    name: str
    """Node name, as the inventory or the emulated cluster calls it."""
    host: str
    """Address to listen on."""
    port: int
    """Port to listen on (0: any free port)."""
    secret: bytes = field(repr=False)
    """Cluster shared secret."""
    memory_budget: int
    """Bytes a stage may need on this node (CWB's stage memory); larger assignments are refused."""
    data: Path | None = None
    """This node's dataset folder (stage-1 assignments may name another path)."""
    board: EmulatedBoard | None = None
    """Emulated board, or None to run at the real speed of this machine."""
    device: str = "cpu"
    """Torch device the stage runs on."""
    timeout: float = 30.0
    """Seconds any single socket wait may last (connect, one frame in flight)."""
    idle_timeout: float = 300.0
    """Seconds a connection may stay silent; the coordinator pings far more often."""


class NodeAgent:
    """Serves one node; ``await start()``, then ``await wait_stopped()``, then ``await close()``."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.runner: StageRunner | None = None
        self._server: Server | None = None
        self._control: Connection | None = None
        self._peers = PeerPool(config.secret, config.timeout)
        self._telemetry = LatestSample()
        self._pusher: asyncio.Task | None = None
        self._data_cache: tuple[tuple, StageOneData] | None = None
        self._stopped = asyncio.Event()

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the agent listens on."""
        assert self._server is not None, "start() first"
        return self._server.address

    async def start(self) -> None:
        """Listen on the configured port; raises NodeError when it cannot."""
        self._server = await serve(self.config.host, self.config.port, self._handle, self.config.secret,
                                   timeout=self.config.timeout)
        log.info("agent %s listening on %s:%d (budget %s, %s)", self.config.name, *self.address,
                 format_bytes(self.config.memory_budget), self.config.board or "real speed")

    def request_stop(self) -> None:
        """Ask the agent to stop (SIGTERM, SHUTDOWN)."""
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def close(self) -> None:
        """Stop serving, drop the chains and close every connection."""
        if self._pusher is not None:
            self._pusher.cancel()
        if self.runner is not None:
            await self.runner.close()
        if self._server is not None:
            await self._server.close()
        self._peers.close()
        await self._telemetry.close()
        log.info("agent %s stopped", self.config.name)

    # -- connections ------------------------------------------------------------------------------

    async def _handle(self, conn: Connection) -> None:
        try:
            while True:
                try:
                    message = await recv_op(conn, timeout=self.config.idle_timeout)
                except TransportTimeout:
                    log.info("closing %s, silent for %g s", conn.peer, self.config.idle_timeout)
                    return
                except ConnectionClosed as exc:  # peers and coordinators come and go; that is no warning
                    log.info("%s", exc)
                    return
                if message.op is Op.ATTACH:
                    await self._attach(conn, message)
                elif message.op in (Op.ACTIVATION, Op.GRADIENT):
                    await self._data(message)
                elif message.op is Op.PING:
                    await send_op(conn, Op.PONG, message.header)
                elif message.op in CONTROL_OPS:
                    if conn is not self._control:
                        raise ProtocolError(f"{message.op.value} needs an attached control connection (send ATTACH first)")
                    if message.op is Op.SHUTDOWN:
                        log.info("SHUTDOWN from the coordinator")
                        self.request_stop()
                        return
                    await self._control_op(conn, message)
                else:
                    raise ProtocolError(f"a node does not accept {message.op.value}")
        finally:
            if conn is self._control:
                self._control = None
                log.info("coordinator %s detached", conn.peer)
                if self.runner is not None:
                    await self.runner.abort_all()

    async def _attach(self, conn: Connection, message: Message) -> None:
        if self._control is not None and self._control is not conn:
            log.info("coordinator %s replaces %s", conn.peer, self._control.peer)
            self._control.close()
        self._control = conn
        if self.runner is not None:
            await self.runner.abort_all()
        board = self.config.board
        await send_op(conn, Op.ATTACHED, {
            "req": message.header.get("req"),
            "name": self.config.name,
            "pid": os.getpid(),
            "memory_budget": self.config.memory_budget,
            "emulated": None if board is None else asdict(board),
            "data": str(self.config.data) if self.config.data else None,
            "device": self.config.device,
            # What the agent holds before any stage (torch, and its CUDA context once made): planners
            # subtract it from the budget, since a stage's planned memory comes on top of it.
            "runtime_bytes": resident_bytes(),
        })
        log.info("attached to coordinator %s", conn.peer)

    async def _report(self, op: Op, header: dict[str, Any]) -> None:
        conn = self._control
        if conn is None:
            log.info("no coordinator attached; dropping %s %s", op.value, header.get("chain", ""))
            return
        try:
            await send_op(conn, op, header)
        except NodeError as exc:
            log.warning("cannot report %s to the coordinator: %s", op.value, exc)

    async def _data(self, message: Message) -> None:
        chain = need(message, "chain", int)
        if len(message.tensors) != 1:
            raise ProtocolError(f"{message.op.value} carries one tensor, got {len(message.tensors)}")
        if self.runner is None:
            await self._report(Op.FAILED, {"chain": chain, "reason": f"{self.config.name} has no stage assigned"})
            return
        try:
            if message.op is Op.ACTIVATION:
                self.runner.activation(chain, need(message, "batch", int), need(message, "iteration", int),
                                       _reply_to(message), message.tensors[0])
            else:
                self.runner.gradient(chain, message.tensors[0])
        except NodeError as exc:
            await self._report(Op.FAILED, {"chain": chain, "reason": str(exc)})

    # -- control ops ------------------------------------------------------------------------------

    async def _control_op(self, conn: Connection, message: Message) -> None:
        op, req = message.op, message.header.get("req")
        try:
            if op is Op.ASSIGN:
                await self._assign(conn, message)
            elif op is Op.TELEMETRY:
                await self._telemetry_op(conn, message)
            elif op in (Op.START, Op.NEXT_HOP, Op.ABORT):
                await self._chain_op(message)
            else:
                runner = self._require_runner()
                if op is Op.GET_PARAMS:
                    keys, tensors = pack_state(await runner.state_dict(momentum=message.header.get("momentum") is True))
                    await send_op(conn, Op.PARAMS, {"req": req, "keys": keys}, tensors)
                else:
                    if message.header.get("optim") is not None:  # a time budget re-planned the run
                        runner.worker.reschedule(OptimConfig.from_dict(need(message, "optim", dict)))
                    state = unpack_state(message.header, message.tensors)
                    if state:
                        await runner.load_state_dict(state)
                    await send_op(conn, Op.PARAMS_SET, {"req": req})
        except (EngineError, NodeError, RuntimeError) as exc:
            if isinstance(exc, ProtocolError):
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            log.warning("%s failed: %s", op.value, reason)
            if "chain" in message.header:
                await send_op(conn, Op.FAILED, {"chain": message.header["chain"], "reason": reason})
            else:
                await send_op(conn, Op.ERROR, {"req": req, "reason": reason})

    def _require_runner(self) -> StageRunner:
        if self.runner is None:
            raise NodeError(f"{self.config.name} has no stage assigned")
        return self.runner

    async def _chain_op(self, message: Message) -> None:
        chain = need(message, "chain", int)
        runner = self._require_runner()
        if message.op is Op.START:
            runner.start(chain, need(message, "batch", int), need(message, "iteration", int))
        elif message.op is Op.NEXT_HOP:
            prepare = need(message, "prepare", int) if message.header.get("prepare") is not None else None
            runner.next_hop(chain, need(message, "node", str), need(message, "host", str), need(message, "port", int), prepare)
        else:
            await runner.abort(chain)

    async def _assign(self, conn: Connection, message: Message) -> None:
        h, req = message.header, message.header.get("req")
        stage = need(message, "stage", dict)
        try:
            spec = StageSpec.from_dict(stage["spec"])
            index, count = int(stage["index"]), int(stage["count"])
            optim = OptimConfig(**need(message, "optim", dict))
            memory = StageMemory(**h["memory"]) if h.get("memory") is not None else None
            data = DataSettings.from_dict(h["data"]) if h.get("data") is not None else None
            address = need(message, "address", dict)
            host, port = str(address["host"]), int(address["port"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"assign: malformed stage settings ({type(exc).__name__}: {exc})") from None
        who = f"{self.config.name}: stage {index + 1} (units {spec.start}..{spec.end - 1})"
        if memory is not None:
            try:
                memory.check(self.config.memory_budget, who)
            except ConfigError as exc:
                log.warning("refusing %s", exc)
                await send_op(conn, Op.REFUSED, {"req": req, "reason": str(exc), "need": memory.total,
                                                 "budget": self.config.memory_budget})
                return
        if self.runner is not None:
            await self.runner.close()
            await self.runner.abort_all()
            self.runner = None
        state = unpack_state(h, message.tensors)
        stage_data = await asyncio.to_thread(self._load_data, data) if index == 0 and data is not None else None
        worker = await asyncio.to_thread(StageWorker, spec, optim, state, self.config.device, int(h.get("seed", 0)))
        self.runner = StageRunner(
            node=self.config.name, index=index, count=count, worker=worker,
            emulation=self._emulation(h.get("emulation")), data=stage_data, address=(host, port),
            peers=self._peers, report=self._report, overlap=h.get("overlap") is True,
        )
        log.info("assigned %s%s", who, f", data {stage_data.path} ({stage_data.count} images)" if stage_data else "")
        await send_op(conn, Op.ASSIGNED, {"req": req, "data": stage_data.describe() if stage_data else None})

    def _load_data(self, settings: DataSettings) -> StageOneData:
        """The decoded dataset (kept for the next assignment with the same settings: decoding is slow)."""
        path = settings.path or self.config.data
        if path is None:
            raise ConfigError(f"{self.config.name} runs stage 1 but has no dataset: start it with --data or assign a path")
        key = (str(Path(path).expanduser()), settings)
        if self._data_cache is None or self._data_cache[0] != key:
            self._data_cache = (key, StageOneData(settings, Path(path).expanduser()))
        return self._data_cache[1]

    def _emulation(self, targets: dict[str, Any] | None) -> Emulation | None:
        board = self.config.board
        if board is None or targets is None:
            return None
        return Emulation(speed=board.speed, time_scale=board.time_scale, bandwidth=board.bandwidth,
                         latency_ms=board.latency_ms, **targets)

    async def _telemetry_op(self, conn: Connection, message: Message) -> None:
        every = message.header.get("every")
        if every is not None:
            every = need(message, "every", (int, float))
        if every is None:
            await send_op(conn, Op.SAMPLE, await self._sample(message.header.get("req")))
            return
        if self._pusher is not None:
            self._pusher.cancel()
            self._pusher = None
        if float(every) > 0:
            self._pusher = asyncio.get_running_loop().create_task(self._push(conn, float(every)))

    async def _sample(self, req: Any) -> dict[str, Any]:
        sample = await self._telemetry.get(timeout=max(5.0, 3 * self._telemetry.interval))
        emulation = self.runner.emulation.report() if self.runner and self.runner.emulation else None
        return {"req": req, "node": self.config.name, "source": self._telemetry.source_name,
                "sample": sample.to_json_dict(), "emulation": emulation}

    async def _push(self, conn: Connection, every: float) -> None:
        while not conn.closed:
            try:
                await send_op(conn, Op.SAMPLE, await self._sample(None))
            except NodeError as exc:
                log.warning("telemetry push stopped: %s", exc)
                return
            await asyncio.sleep(every)


def _reply_to(message: Message) -> tuple[str, int, str]:
    """``(host, port, node)`` of an ACTIVATION's ``reply_to``; ProtocolError when malformed."""
    reply = need(message, "reply_to", dict)
    host, port, node = reply.get("host"), reply.get("port"), reply.get("node")
    if not (isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool) and isinstance(node, str)):
        raise ProtocolError(f"activation: 'reply_to' must hold host, port and node, got {reply!r:.80}")
    return host, port, node


def default_memory_budget() -> int:
    """This machine's physical memory, the budget when ``--memory-budget`` is not given."""
    import psutil

    return int(psutil.virtual_memory().total)


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (emulated agents share few cores, so one each keeps them fair)."""
    if threads is not None:
        torch.set_num_threads(threads)
