"""The node agent: one TCP port serving the coordinator's control connection and peers' data connections.

Every connection is authenticated (``nodes.wire.serve``) in one of two roles (``nodes.wire.keys``). Only a
connection that proved the coordinator role may ATTACH, and the attached one is the control connection
(a later ATTACH from a new coordinator replaces it); data ops (ACTIVATION, GRADIENT) and PING are served
on any connection, and a peer's ``reply_to`` must name a node of the assigned plan at its planned
address. A malformed message closes only the connection it came on, with the reason logged in one line;
the agent keeps serving the others. After an assignment, peer frames are bounded by the stage's cut
buffers and the chains held at once by the memory budget.
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
from nodes.errors import NodeError, ProtocolError
from nodes.op_frames import field as need
from nodes.op_frames import recv_op, send_op
from nodes.peers import PeerPool
from nodes.stage_runner import StageRunner
from nodes.telemetry.json_form import sample_to_json
from nodes.telemetry.process import resident_bytes
from nodes.wire import (
    Connection,
    ConnectionClosed,
    FrameLimits,
    Server,
    TransportTimeout,
    serve,
)
from nodes.wire.frame import GiB, MiB
from nodes.wire.keys import as_credentials

log = logging.getLogger(__name__)

CONTROL_OPS = frozenset({Op.ASSIGN, Op.START, Op.NEXT_HOP, Op.ABORT, Op.GET_PARAMS, Op.SET_PARAMS,
                         Op.TELEMETRY, Op.SHUTDOWN})
MIN_CHAINS, MAX_CHAINS = 16, 256
PEER_LIMITS = FrameLimits(max_header_bytes=64 * 1024, max_payload_bytes=16 * MiB)
"""What a peer may send before this node has a stage (then: the stage's cut buffers)."""


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
    """Content of the secret file: the cluster secret, or this node's credential (``nodes.wire.keys``)."""
    memory_budget: int
    """Bytes a stage may need on this node (CWB's stage memory); larger assignments are refused."""
    data: Path | None = None
    """This node's dataset folder; a stage-1 assignment may only name it or a folder inside it."""
    board: EmulatedBoard | None = None
    """Emulated board, or None to run at the real speed of this machine."""
    device: str = "cpu"
    """Torch device the stage runs on."""
    timeout: float = 30.0
    """Seconds any single socket wait may last (connect, one frame in flight)."""
    idle_timeout: float = 300.0
    """Seconds a connection may stay silent; the coordinator pings far more often."""
    protect: str = "integrity"
    """Least protection of every frame: ``integrity`` (HMAC) or ``encrypt`` (needs ``cryptography``)."""


class NodeAgent:
    """Serves one node; ``await start()``, then ``await wait_stopped()``, then ``await close()``."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.credentials = as_credentials(config.secret)
        if self.credentials.node is not None and self.credentials.node != config.name:
            raise NodeError(f"the credential file belongs to node {self.credentials.node!r}, not {config.name!r}")
        self.runner: StageRunner | None = None
        self._server: Server | None = None
        self._control: Connection | None = None
        self._peer_limits = PEER_LIMITS
        self._control_limits = FrameLimits(max_payload_bytes=min(GiB, config.memory_budget))
        self._peers = PeerPool(self.credentials, config.timeout, config.protect)
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
        self._server = await serve(self.config.host, self.config.port, self._handle, self.credentials,
                                   name=self.config.name, protect=self.config.protect, timeout=self.config.timeout,
                                   limits=self._control_limits)
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
                limits = self._control_limits if conn.role == "coordinator" else self._peer_limits
                try:
                    message = await recv_op(conn, timeout=self.config.idle_timeout, limits=limits)
                except TransportTimeout:
                    log.info("closing %s, silent for %g s", conn.peer, self.config.idle_timeout)
                    return
                except ConnectionClosed as exc:  # peers and coordinators come and go; that is no warning
                    log.info("%s", exc)
                    return
                if message.op in (Op.ACTIVATION, Op.GRADIENT):
                    await self._data(message)
                elif message.op is Op.PING:
                    await send_op(conn, Op.PONG, message.header)
                elif message.op in CONTROL_OPS or message.op is Op.ATTACH:
                    if conn.role != "coordinator":
                        raise ProtocolError(f"{message.op.value} needs the coordinator "
                                            f"role; {conn.peer} authenticated as {conn.role}")
                    if message.op is Op.ATTACH:
                        await self._attach(conn, message)
                        continue
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
                reply_to = _reply_to(message)
                if not self.runner.in_plan(reply_to[2], reply_to[0], reply_to[1]):
                    raise ProtocolError(f"activation: reply_to {reply_to[2]} at {reply_to[0]}:{reply_to[1]} "
                                        "is not a node of the assigned plan")
                self.runner.activation(chain, need(message, "batch", int), need(message, "iteration", int),
                                       reply_to, message.tensors[0])
            else:
                self.runner.gradient(chain, message.tensors[0])
        except ProtocolError:
            raise
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
            prepare = need(message, "prepare", int) if message.header.get("prepare") is not None else None
            runner.start(chain, need(message, "batch", int), need(message, "iteration", int), prepare)
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
            plan = {str(node): (str(at[0]), int(at[1])) for node, at in need(message, "peers", dict).items()}
            successor = str(h["successor"]) if h.get("successor") is not None else None
            if successor is not None and successor not in plan:
                raise ValueError(f"successor {successor} is not a node of the plan")
        except (KeyError, TypeError, ValueError, IndexError) as exc:
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
        self._peer_limits, max_chains = _stage_bounds(memory, self.config.memory_budget)
        worker = await asyncio.to_thread(StageWorker, spec, optim, state, self.config.device, int(h.get("seed", 0)))
        self.runner = StageRunner(
            node=self.config.name, index=index, count=count, worker=worker,
            emulation=self._emulation(h.get("emulation")), data=stage_data, address=(host, port),
            peers=self._peers, report=self._report, overlap=h.get("overlap") is True, plan=plan,
            successor=successor, max_chains=max_chains,
        )
        log.info("assigned %s%s", who, f", data {stage_data.path} ({stage_data.count} images)" if stage_data else "")
        await send_op(conn, Op.ASSIGNED, {"req": req, "data": stage_data.describe() if stage_data else None})

    def _load_data(self, settings: DataSettings) -> StageOneData:
        """The decoded dataset (kept for the next assignment with the same settings: decoding is slow)."""
        path = self._data_path(settings.path)
        key = (str(path), settings)
        if self._data_cache is None or self._data_cache[0] != key:
            self._data_cache = (key, StageOneData(settings, path))
        return self._data_cache[1]

    def _data_path(self, asked: str | None) -> Path:
        """The dataset folder: this node's ``--data``, or a folder inside it that the assignment names.
        A path from the wire never reaches a file outside the node's own configuration."""
        own = self.config.data
        if own is None:
            raise ConfigError(f"{self.config.name} runs stage 1 but has no dataset: start its agent with --data")
        root = own.expanduser().resolve()
        if not asked:
            return root
        path = Path(asked).expanduser().resolve()
        if path != root and root not in path.parents:
            raise ConfigError(f"{self.config.name} reads data only under its own --data {root}; the run asked for {asked}")
        return path

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
                "sample": sample_to_json(sample), "emulation": emulation}

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


def _stage_bounds(memory: StageMemory | None, budget: int) -> tuple[FrameLimits, int]:
    """Per-frame limits for peers and the most chains held at once, for a stage of ``memory`` on ``budget``.

    A peer frame carries one activation or gradient, within the stage's cut buffers (2 x in + 2 x out, at
    the profile's batch; 4x that leaves room for a run at a larger batch or image size) and never more
    than the budget. Each chain held keeps its activations and a cut buffer, and what the weights leave
    of the budget bounds how many may be held: at most :data:`MAX_CHAINS`, and at least
    :data:`MIN_CHAINS`, a floor so that a profile measured at a larger batch than the run's cannot
    starve a node of chains.
    """
    if memory is None:
        return FrameLimits(max_header_bytes=64 * 1024, max_payload_bytes=min(GiB, budget)), 64
    payload = min(budget, max(4 * memory.buffers, 64 * MiB))
    per_chain = max(1, memory.activations + memory.buffers // 2)
    headroom = budget - memory.weights - memory.gradients - memory.optimizer
    chains = int(min(MAX_CHAINS, max(MIN_CHAINS, headroom // per_chain)))
    return FrameLimits(max_header_bytes=64 * 1024, max_payload_bytes=payload), chains


def default_memory_budget() -> int:
    """This machine's physical memory, the budget when ``--memory-budget`` is not given."""
    import psutil

    return int(psutil.virtual_memory().total)


def set_torch_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (emulated agents share few cores, so one each keeps them fair)."""
    if threads is not None:
        torch.set_num_threads(threads)
