"""``litesrl cluster up/down/status``: start, stop and list emulated node agents on this machine.

Each agent is a real ``python -m nodes.agent_main --emulate`` process on 127.0.0.1 with a speed factor,
a memory budget and an emulated link; it runs a small real workload and stretches every step to the
profiled board's time x ``time_scale`` (``engine.dhp.emulation``), so six agents on two cores behave
like six TX2s. A state file, ``$XDG_STATE_HOME/litesrl/cluster.json``, records each agent's pid,
process start time and port; ``down`` signals only processes that still match it (SIGTERM, then
SIGKILL), so a reused pid is never touched. The agents run in their own sessions and outlive the
command that started them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import psutil

from console.errors import ConsoleError
from console.process_id import ProcessId
from engine.io import atomic_write_json

STATE_NAME = "cluster.json"
AGENT_ENV = "LITESRL_AGENT"
"""Marks an agent process with its node name (as the SSH fleet does)."""
START_TIMEOUT = 60.0
"""Seconds an agent may take to import torch and bind its port."""
_LISTENING = re.compile(r"listening on (\S+):(\d+)")


@dataclass(frozen=True)
class Agent:
    """One agent process of the emulated cluster."""

    name: str
    """Node name (``node-1`` ...)."""
    pid: int
    """Process id."""
    created: float
    """The process's start time (``psutil.Process.create_time``), which tells it from a reused pid."""
    host: str
    """Address it listens on."""
    port: int
    """TCP port it serves."""
    speed: float
    """Compute speed relative to the profiled board."""
    memory_budget: str
    """Memory budget as given (e.g. ``3GB``)."""
    log_file: str
    """Its log (``--log-file``); its stdout and stderr go to ``<log>.out``."""

    def alive(self) -> bool:
        """True while the recorded process runs (not a zombie, not a new process under the same pid)."""
        return ProcessId(self.pid, self.created).alive()


@dataclass(frozen=True)
class ClusterState:
    """What ``up`` started; read by ``down``, ``status``, ``litesrl train --cluster local`` and the console."""

    agents: tuple[Agent, ...]
    profile: str
    """Board profile the agents emulate (``tx2``) or a profile file."""
    time_scale: float
    """Every emulated duration is multiplied by this."""
    bandwidth: str
    """Emulated link rate, e.g. ``1Gbit``."""
    latency: str
    """Emulated per-message latency, e.g. ``0.5ms``."""
    secret_file: str
    """The cluster secret the agents authenticate with."""
    data: str
    """Dataset folder every agent reads as stage 1."""
    started: float = field(default_factory=time.time)
    """When ``up`` ran (seconds since the epoch)."""
    memory_accounting: str = "exact"
    """How CWB counts a stage's memory against the budgets (``engine.cwb.cost.ACCOUNTINGS``); files from
    before this field were planned with ``exact``."""
    owner: ProcessId | None = None
    """The console that started the cluster for itself and stops it when it exits; None: started by
    ``litesrl cluster up`` (or by a console before this field), which only ``litesrl cluster down`` stops.
    A cluster whose owner is gone is a crashed console's leftover (``console.services.leftovers``)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ClusterState:
        try:
            agents = tuple(Agent(**entry) for entry in data["agents"])
            owner = ProcessId(**data["owner"]) if data.get("owner") else None
            return cls(**{**data, "agents": agents, "owner": owner})
        except (KeyError, TypeError) as exc:
            raise ConsoleError(f"the cluster state file is damaged ({exc}); stop stray agents and delete it") from None


def state_dir() -> Path:
    """``$XDG_STATE_HOME/litesrl`` (``~/.local/state/litesrl``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "litesrl"


def read_state(directory: Path | None = None) -> ClusterState | None:
    """The recorded cluster, or None when none was started."""
    import json

    path = (directory or state_dir()) / STATE_NAME
    try:
        return ClusterState.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConsoleError(f"cannot read {path}: {exc}") from None


def require_state(directory: Path | None = None) -> ClusterState:
    """The running cluster; ConsoleError saying how to start one, or naming agents that died."""
    state = read_state(directory)
    if state is None:
        raise ConsoleError("no local cluster is up; start one with `litesrl cluster up --nodes 6 --profile tx2`")
    dead = [agent.name for agent in state.agents if not agent.alive()]
    if dead:
        raise ConsoleError(f"agent(s) {', '.join(dead)} of the local cluster are not running; "
                           "restart it with `litesrl cluster down` and `litesrl cluster up`")
    return state


DEFAULT_TIME_SCALE = 0.2
"""Emulated boards run 5x faster than real ones. At 0.1 the last ResNet-18 stage needs more real CPU
than its target on a 2-core host running six agents, and overruns distort the schedule."""
DEFAULT_MEMORY = "3GiB"
"""The paper's 3 GB per TX2, in its units (its MB are MiB: assets/profiles/README.md)."""
DEFAULT_ACCOUNTING = "paper"
"""The paper's memory count (5.1), with which 3 GB boards need 3 / 4 / 5 partitions for ResNet-18 / 34 / 50."""


def up(
    nodes: int,
    *,
    profile: str = "tx2",
    time_scale: float = DEFAULT_TIME_SCALE,
    bandwidth: str = "1Gbit",
    latency: str = "0ms",
    memory_per_node: str = DEFAULT_MEMORY,
    memory_accounting: str = DEFAULT_ACCOUNTING,
    speeds: Sequence[float] | None = None,
    data: Path | None = None,
    owner: ProcessId | None = None,
    directory: Path | None = None,
) -> ClusterState:
    """Start ``nodes`` emulated agents and record them (with the console that ``owner``s them, if one does);
    ConsoleError when a cluster already runs or an agent fails."""
    from engine.cwb.units import parse_bandwidth, parse_duration_ms, parse_size

    directory = directory or state_dir()
    current = read_state(directory)
    if current is not None and any(agent.alive() for agent in current.agents):
        raise ConsoleError(f"a local cluster of {len(current.agents)} node(s) is already up; run `litesrl cluster down` first")
    if nodes < 1:
        raise ConsoleError(f"--nodes must be at least 1, got {nodes}")
    if not time_scale > 0:
        raise ConsoleError(f"--time-scale must be > 0, got {time_scale}")
    speeds = list(speeds) if speeds else [1.0] * nodes
    if len(speeds) != nodes or not all(s > 0 for s in speeds):
        raise ConsoleError(f"give one positive speed per node ({nodes}), got {speeds}")
    from engine.cwb.cost import ACCOUNTINGS, check_choice

    parse_bandwidth(bandwidth), parse_duration_ms(latency), parse_size(memory_per_node)  # fail before starting anything
    check_choice("memory accounting", memory_accounting, ACCOUNTINGS)
    secret_file = ensure_secret()
    data = data or ensure_demo_data(directory / "cluster-data")
    logs = directory / "agents"
    logs.mkdir(parents=True, exist_ok=True)
    started = []
    try:
        for index, speed in enumerate(speeds, start=1):
            name = f"node-{index}"
            argv = [sys.executable, "-m", "nodes.agent_main", "--host", "127.0.0.1", "--port", "0",
                    "--secret-file", str(secret_file), "--log-file", str(logs / f"{name}.log"), "--name", name,
                    "--memory-budget", memory_per_node, "--data", str(data), "--emulate", "--speed", f"{speed:g}",
                    "--time-scale", f"{time_scale:g}", "--bandwidth", bandwidth, "--latency", latency]
            started.append((name, speed, spawn(argv, name, logs / f"{name}.log.out")))
        agents = tuple(
            Agent(name, process.pid, psutil.Process(process.pid).create_time(), *wait_listening(process, out),
                  speed, memory_per_node, str(logs / f"{name}.log"))
            for name, speed, (process, out) in started
        )
    except BaseException:
        _stop_pids([(process.pid, None) for _, _, (process, _) in started], timeout=2.0)
        raise
    state = ClusterState(agents, profile, time_scale, bandwidth, latency, str(secret_file), str(data),
                         memory_accounting=memory_accounting, owner=owner)
    atomic_write_json(directory / STATE_NAME, state.to_dict())
    return state


def set_owner(owner: ProcessId | None, directory: Path | None = None) -> ClusterState:
    """Record ``owner`` as the console that stops the running cluster (None: nobody, as after
    ``litesrl cluster up``); ConsoleError when no cluster is recorded."""
    directory = directory or state_dir()
    state = read_state(directory)
    if state is None:
        raise ConsoleError("no local cluster is up")
    state = replace(state, owner=owner)
    atomic_write_json(directory / STATE_NAME, state.to_dict())
    return state


def down(directory: Path | None = None, timeout: float = 5.0) -> list[tuple[str, str]]:
    """Stop every recorded agent (SIGTERM, then SIGKILL after ``timeout`` s); returns (node, what happened)."""
    directory = directory or state_dir()
    state = read_state(directory)
    if state is None:
        return []
    results = _stop_pids([(agent.pid, agent.created) for agent in state.agents], timeout)
    outcome = [(agent.name, result) for agent, result in zip(state.agents, results)]
    (directory / STATE_NAME).unlink(missing_ok=True)
    return outcome


def spawn(argv: list[str], name: str, output: Path) -> tuple[subprocess.Popen, Path]:
    """Start one agent in its own session (it outlives this command), output to ``output``."""
    env = {**os.environ, AGENT_ENV: name, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    with open(output, "wb") as out:  # fresh: wait_listening must not read an earlier run's port
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, env=env)
    return process, output


def wait_listening(process: subprocess.Popen, output: Path, timeout: float = START_TIMEOUT) -> tuple[str, int]:
    """The ``(host, port)`` an agent printed once listening; ConsoleError quoting its output if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = output.read_text(errors="replace") if output.exists() else ""
        found = _LISTENING.findall(text)
        if found:
            host, port = found[-1]
            return host, int(port)
        if process.poll() is not None:
            lines = [line for line in text.splitlines() if line.strip()]
            raise ConsoleError(f"agent pid {process.pid} exited at start: {lines[-1] if lines else 'no output'}")
        time.sleep(0.05)
    raise ConsoleError(f"agent pid {process.pid} did not listen within {timeout:g} s (see {output})")


def ensure_secret() -> Path:
    """The default cluster secret file, created (0600) when there is none."""
    from nodes.wire.auth import default_secret_path, write_secret

    path = default_secret_path()
    if not path.exists():
        write_secret(path)
    return path


def ensure_demo_data(folder: Path) -> Path:
    """A small synthetic optical dataset for the emulated cluster (generated once, seeded)."""
    if not folder.is_dir() or not any(folder.rglob("*.png")):
        from engine.data.synthetic import generate

        generate(folder, "optical", per_class=24, size=48, seed=0)
    return folder


def _stop_pids(recorded: list[tuple[int, float | None]], timeout: float) -> list[str]:
    """SIGTERM every ``(pid, created)`` that is still the recorded process, all at once, then SIGKILL those
    still alive ``timeout`` s later (one deadline for all: six agents take as long as the slowest, not the
    sum); says what happened to each."""
    results = ["not running"] * len(recorded)
    signalled: dict[psutil.Process, int] = {}
    for i, (pid, created) in enumerate(recorded):
        try:
            process = psutil.Process(pid)
            if created is not None and abs(process.create_time() - created) >= 0.5:
                continue
            if process.status() == psutil.STATUS_ZOMBIE:
                _reap(process)
                continue
            process.send_signal(signal.SIGTERM)
            signalled[process] = i
        except psutil.NoSuchProcess:
            pass
    gone, alive = psutil.wait_procs(list(signalled), timeout)
    for process in gone:
        results[signalled[process]] = "stopped"
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
        results[signalled[process]] = "killed"
    psutil.wait_procs(alive, 5)
    return results


def _reap(process: psutil.Process) -> None:
    """Collect a zombie this process started (one started by an earlier command is init's to reap)."""
    try:
        process.wait(0)
    except (psutil.TimeoutExpired, psutil.NoSuchProcess):
        pass
