"""The fleet backend for the emulated cluster: the agent processes of ``litesrl cluster up`` on this machine.

The cluster is started (when asked and not up) and profiled through the ``litesrl`` command in child
processes, so torch never loads into the console. Telemetry comes from psutil: each agent's own CPU
and memory, plus the host's cores and sensors (:mod:`console.services.agent_probe`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from console.cluster.local import ClusterState, down, read_state, set_owner, state_dir
from console.errors import ConsoleError
from console.fleet.profiles import profile_from_output
from console.process_id import ProcessId
from console.services.agent_probe import AgentProbe, LocalAgent
from console.services.backend import FleetBackend, NodeInfo, ProfileRequest, Update
from engine.cwb.profile_format import Profile
from engine.cwb.units import parse_size

log = logging.getLogger(__name__)

LITESRL = (sys.executable, "-m", "console.cli.main")
"""How the console runs its own CLI in a child process (the same interpreter and checkout)."""


async def run_litesrl(args: list[str], on_line: Callable[[str], None]) -> str:
    """Run ``litesrl ARGS`` as a child; stream its stderr lines to ``on_line``, return its stdout.

    Raises ConsoleError with the command's own ``error:`` line when it exits non-zero.
    """
    process = await asyncio.create_subprocess_exec(
        *LITESRL, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    last = ""

    async def errors() -> None:
        nonlocal last
        assert process.stderr is not None
        async for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if not line:
                continue
            if line.startswith("error:") or not last.startswith("error:"):
                last = line  # the command's own "error: ..." line wins over what follows it
            on_line(line)

    try:
        stdout, _ = await asyncio.gather(process.stdout.read(), errors())
        code = await process.wait()
    except asyncio.CancelledError:
        process.terminate()
        await process.wait()
        raise
    if code != 0:
        raise ConsoleError(f"litesrl {args[0]} failed (exit {code}): {last.removeprefix('error: ') or 'no output'}")
    return stdout.decode("utf-8", "replace")


class LocalBackend(FleetBackend):
    """The emulated cluster; with ``nodes`` set, it is started (``litesrl cluster up``) when none is up."""

    def __init__(self, nodes: int | None, *, profile: str = "tx2", time_scale: float | None = None,
                 memory_per_node: str | None = None, keep: bool = False) -> None:
        self.want = nodes
        self.options = {"--profile": profile, "--time-scale": time_scale, "--memory-per-node": memory_per_node}
        self.keep = keep
        self.title = "local emulated cluster"
        self.owns_cluster = False
        """True when this console started the cluster, or took over an earlier console's (then :meth:`close`
        stops it unless ``keep``)."""
        self._agents: tuple[LocalAgent, ...] = ()
        self._infos: tuple[NodeInfo, ...] = ()
        self._accounting: str | None = None

    @property
    def nodes(self) -> tuple[NodeInfo, ...]:
        return self._infos

    @property
    def cluster_argument(self) -> str:
        return "local"

    async def start(self) -> None:
        """Use the running cluster, or start one of ``nodes`` agents; ConsoleError when neither works."""
        state = read_state()
        if state is None or not all(agent.alive() for agent in state.agents):
            if self.want is None:
                raise ConsoleError("no local cluster is up: start one with `litesrl cluster up --nodes 6` "
                                   "or run `litesrl-console --local 6`")
            if state is not None:
                dead = [a.name for a in state.agents if not a.alive()]
                log.warning("found leftovers of an earlier cluster (%s of %d agents gone: %s); stopping the rest "
                            "before starting a new one", len(dead), len(state.agents), ", ".join(dead))
                await asyncio.to_thread(down)
            args = ["cluster", "up", "--nodes", str(self.want), "--owner-pid", str(os.getpid())]
            for option, value in self.options.items():
                if value is not None:
                    args += [option, str(value)]
            log.info("starting the emulated cluster: litesrl %s", " ".join(args))
            self.owns_cluster = True  # before it is up: a console closed meanwhile still stops it
            await run_litesrl(args, lambda line: log.info("cluster: %s", line))
            state = read_state()
            if state is None:
                raise ConsoleError("`litesrl cluster up` succeeded but left no cluster state")
        elif self.owns_cluster:
            log.info("using the cluster taken over from an earlier console (%s); it stops when this console exits",
                     ", ".join(f"{a.name} pid {a.pid}" for a in state.agents))
        else:
            log.warning("found a local cluster already up (%s); using it: `litesrl cluster down` stops it",
                        ", ".join(f"{a.name} pid {a.pid}" for a in state.agents))
            if self.want is not None and self.want != len(state.agents):
                log.warning("using the running cluster of %d node(s), not %d", len(state.agents), self.want)
        self._adopt(state)

    def take_over(self) -> None:
        """Own the running cluster, left by a console that is gone: stop it on exit as one started here.
        ConsoleError when no cluster is recorded."""
        set_owner(ProcessId.me())
        self.owns_cluster = True

    @property
    def memory_accounting(self) -> str | None:
        """The emulated cluster's accounting (``litesrl cluster up --memory-accounting``)."""
        return self._accounting

    def _adopt(self, state: ClusterState) -> None:
        self._accounting = state.memory_accounting
        board = Path(state.profile).stem if state.profile.endswith(".json") else state.profile
        self._agents = tuple(LocalAgent(a.name, a.pid, a.port, board, parse_size(a.memory_budget), a.speed)
                             for a in state.agents)
        self._infos = tuple(
            NodeInfo(a.name, board if a.speed == 1 else f"{board} ×{a.speed:g}",
                     f"{a.host}:{a.port} (pid {a.pid})", agent.memory_budget, a.speed)
            for a, agent in zip(state.agents, self._agents))
        scale = f", time ×{state.time_scale:g}" if state.time_scale != 1 else ""
        self.title = f"local emulated cluster ({len(self._agents)} × {board}{scale})"

    async def updates(self, interval: float) -> AsyncIterator[Update]:
        probe = await AgentProbe.open(interval)
        try:
            deadline = time.monotonic()
            while True:
                for item in probe.read(self._agents):
                    yield item
                deadline += interval
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            await probe.close()

    async def profile(self, node: str, request: ProfileRequest, on_line: Callable[[str], None]) -> Profile:
        """Profile on this machine, where the emulated node runs (its times are this CPU's, not a TX2's)."""
        if node not in {agent.name for agent in self._agents}:
            raise ConsoleError(f"no node {node!r} in the local cluster")
        out = state_dir() / "profiles" / f"{node}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        stdout = await run_litesrl(["profile", "--out", str(out), *request.options()], on_line)
        return profile_from_output(stdout, node)

    def measured_profiles(self) -> dict[str, Path]:
        """The profiles kept by :meth:`profile`, one per node, newest first."""
        folder = state_dir() / "profiles"
        found = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True) if folder.is_dir() else []
        names = {agent.name for agent in self._agents}
        return {path.stem: path for path in found if path.stem in names}

    async def close(self) -> None:
        if not self.owns_cluster:
            return
        self.owns_cluster = False
        if self.keep:  # kept on purpose: not a leftover for the next console to offer stopping
            log.info("leaving the emulated cluster running (--keep-cluster): `litesrl cluster down` stops it")
            await asyncio.to_thread(_release)
        else:
            log.info("stopping the emulated cluster this console started")
            await asyncio.to_thread(down)


def _release() -> None:
    """Record the cluster as nobody's, as if ``litesrl cluster up`` had started it."""
    try:
        set_owner(None)
    except ConsoleError as exc:
        log.warning("cannot release the cluster: %s", exc)
