"""``start`` / ``stop`` / ``status`` of the node agent, run detached on the node so it outlives the SSH session.

The agent is launched with ``setsid nohup`` (its own session, stdin from /dev/null, output to a file
on the node, emptied at each start) and its pid is written to a pid file; the size of its log then is
kept too, so ``status`` shows the current start's lines only. An agent that already runs with other
settings (its command line or the secret changed) is reported as such and restarted only when asked. The process also
carries the environment variable ``LITESRL_AGENT=<node>``; every liveness check reads it back from ``/proc/<pid>/environ``, so a
stale pid file whose pid was reused after a reboot is never mistaken for the agent (nor killed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace

from console.errors import FleetError
from console.fleet.inventory import InventoryNode
from console.fleet.remote import RemoteLayout, sh_join, sh_quote
from console.fleet.ssh import NodeConnection

AGENT_ENV = "LITESRL_AGENT"
"""Environment variable that marks the agent process with its node name."""

START_SETTLE = 1.0
"""Seconds to wait after launching a custom ``command`` before checking it is still alive."""

START_TIMEOUT = 120.0
"""Seconds the agent may take from launch to listening (a board importing torch from its SD card is slow)."""

START_POLL = 0.5
"""Seconds between checks while the agent starts."""

LOG_TAIL_LINES = 20
"""Lines of the agent's log returned by ``status`` and quoted when it dies at start."""


@dataclass(frozen=True)
class AgentStatus:
    """The node agent as seen from its pid file and /proc."""

    node: str
    """Inventory name."""
    running: bool
    """True when the pid file names a live process marked as this node's agent."""
    pid: int | None
    """Pid of the agent (or the stale pid from the file, when ``running`` is false)."""
    action: str
    """What the command did: ``started``, ``restarted``, ``already running``, ``running with other settings``,
    ``stopped`` (SIGTERM), ``killed`` (SIGKILL after the timeout), ``not running`` or ``status``."""
    log_tail: tuple[str, ...] = ()
    """Last lines of the agent's log and output files."""


def agent_command(node: InventoryNode, layout: RemoteLayout) -> list[str]:
    """The argv that starts the node agent; the one place to adjust when ``nodes/agent_main.py`` changes."""
    argv = [
        layout.venv_python, "-m", "nodes.agent_main",
        "--host", node.agent_bind,
        "--port", str(node.agent_port),
        "--secret-file", layout.secret_file,
        "--log-file", layout.log_file,
        "--name", node.name,
        "--memory-budget", str(node.memory_budget),
    ]
    if node.data_path:
        argv += ["--data", node.data_path]
    return argv


def _alive_function(node: InventoryNode) -> str:
    # A shell function: true when pid $1 is alive and carries our marker (zombies have an empty environ).
    marker = sh_quote(f"{AGENT_ENV}={node.name}")
    return (
        'alive() { [ -n "$1" ] && [ -r "/proc/$1/environ" ] && '
        f"tr '\\000' '\\n' < \"/proc/$1/environ\" 2>/dev/null | grep -qxF {marker}; }}"
    )


STALE_SETTINGS = "running with other settings (start --restart applies them)"
"""``start``'s answer for an agent whose command line or credential differs from what it would start now."""


async def start_agent(conn: NodeConnection, secret: bytes, command: Sequence[str] | None = None, *,
                      restart: bool = False) -> AgentStatus:
    """Copy the node's credential (derived from the cluster ``secret``, never the secret itself: a board
    cannot act as the coordinator of another) to the node (0600) and start the agent detached, unless it
    runs already.

    An agent that runs with another command line or credential is left alone (action
    :data:`STALE_SETTINGS`) unless ``restart``, which stops it and starts it anew. ``command``
    replaces :func:`agent_command` (the argv is run from the node's workdir). Raises
    :class:`FleetError` when the program is missing, or the agent dies before it listens (or does not listen
    within :data:`START_TIMEOUT`), quoting the end of its output.
    """
    node, layout = conn.node, conn.layout
    argv = list(command) if command is not None else agent_command(node, layout)
    pid_file, secret_file = sh_quote(layout.pid_file), sh_quote(layout.secret_file)
    log_file, output_file = sh_quote(layout.log_file), sh_quote(layout.output_file)
    script = "\n".join([
        "set -e",
        _alive_function(node),
        "umask 077",
        f"mkdir -p {sh_quote(layout.workdir)}",
        # The secret arrives on stdin and is renamed into place, so it is never half-written.
        f"cat > {secret_file}.tmp",
        f"if cmp -s {secret_file}.tmp {secret_file}; then same_secret=1; else same_secret=0; fi",
        f'pid=$(cat {pid_file} 2>/dev/null || true)',
        # A running agent keeps the secret it started with, so the file must keep it too.
        f'if alive "$pid"; then rm -f {secret_file}.tmp; echo "running $pid $same_secret"; '
        'tr \'\\000\' \'\\n\' < "/proc/$pid/cmdline"; exit 0; fi',
        f"mv -f {secret_file}.tmp {secret_file}",
        f"command -v {sh_quote(argv[0])} >/dev/null 2>&1 || {{ echo \"missing\"; exit 0; }}",
        f"cd {sh_quote(layout.workdir)}",
        f"wc -c 2>/dev/null < {log_file} > {sh_quote(_log_start(layout))} || echo 0 > {sh_quote(_log_start(layout))}",
        f"{AGENT_ENV}={sh_quote(node.name)} setsid nohup {sh_join(argv)} "
        f"> {output_file} 2>&1 < /dev/null &",
        f"echo $! > {pid_file}",
        'echo "started $!"',
    ])
    from nodes.wire.keys import node_credential_text

    lines = (await conn.run(script, input=node_credential_text(secret, node.name) + "\n")).stdout.splitlines()
    answer = lines[0].split() if lines else []
    if answer[:1] == ["missing"]:
        raise FleetError(f"{node.name}: {argv[0]} not found on the node (run `litesrl nodes deploy {node.name}`)")
    if answer[:1] == ["running"]:
        pid = int(answer[1])
        if answer[2:3] == ["1"] and _same_command(lines[1:], argv):
            return AgentStatus(node.name, True, pid, "already running")
        if not restart:
            return AgentStatus(node.name, True, pid, STALE_SETTINGS)
        await stop_agent(conn)
        started = await start_agent(conn, secret, command)
        return replace(started, action="restarted")
    status = await _started(conn, int(answer[1]), listens=command is None)
    return AgentStatus(node.name, True, status.pid, "started", status.log_tail)


async def _started(conn: NodeConnection, pid: int, listens: bool) -> AgentStatus:
    """Wait until the agent just launched as ``pid`` listens (our agent prints ``listening on``), or, for a custom
    command (``listens`` false), until :data:`START_SETTLE` has passed; FleetError quoting its output if it dies
    first (a port in use, a missing package) or does not listen within :data:`START_TIMEOUT`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while True:
        await asyncio.sleep(START_POLL if listens else START_SETTLE)
        status = await agent_status(conn)
        if not status.running or status.pid != pid:
            tail = next((line for line in reversed(status.log_tail) if line.strip()), "no output")
            raise FleetError(f"{conn.node.name}: the agent exited right after starting: {tail}")
        if not listens or any(line.startswith("listening on ") for line in status.log_tail):
            return status
        if loop.time() >= deadline:
            raise FleetError(f"{conn.node.name}: the agent (pid {pid}) runs but did not listen within "
                             f"{START_TIMEOUT:g} s; see {conn.layout.log_file} on the node")


def _same_command(running: list[str], argv: list[str]) -> bool:
    # The node's shell expanded a leading "~/" of the argv it was given: "/home/nvidia/x" stands for "~/x".
    running = [arg for arg in running if arg]
    return len(running) == len(argv) and all(
        have == want or (want.startswith("~/") and have.endswith(want[1:])) for have, want in zip(running, argv))


def _log_start(layout: RemoteLayout) -> str:
    """File holding the agent log's size when the current agent started."""
    return f"{layout.pid_file[: -len('.pid')]}.logstart"


async def stop_agent(conn: NodeConnection, timeout: float = 10.0) -> AgentStatus:
    """Send SIGTERM to the agent's process group, then SIGKILL if it is still alive after ``timeout`` s."""
    node, layout = conn.node, conn.layout
    pid_file = sh_quote(layout.pid_file)
    ticks = max(1, int(timeout * 10))
    script = "\n".join([
        _alive_function(node),
        f'pid=$(cat {pid_file} 2>/dev/null)',
        f'if ! alive "$pid"; then rm -f {pid_file}; echo "none $pid"; exit 0; fi',
        # setsid made the agent a group leader: signalling -pid also reaches its children.
        'kill -s TERM -- "-$pid" 2>/dev/null || kill -s TERM "$pid"',
        f'i=0; while alive "$pid" && [ "$i" -lt {ticks} ]; do sleep 0.1; i=$((i+1)); done',
        'how=stopped',
        'if alive "$pid"; then how=killed; kill -s KILL -- "-$pid" 2>/dev/null || kill -s KILL "$pid"; fi',
        'i=0; while alive "$pid" && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done',
        'if alive "$pid"; then echo "stuck $pid"; exit 0; fi',
        f"rm -f {pid_file}",
        'echo "$how $pid"',
    ])
    answer = (await conn.run(script, timeout=timeout + 30)).stdout.split()
    word, pid = answer[0], (int(answer[1]) if len(answer) > 1 and answer[1].isdigit() else None)
    if word == "stuck":
        raise FleetError(f"{node.name}: agent pid {pid} survived SIGKILL (uninterruptible sleep?)")
    if word == "none":
        return AgentStatus(node.name, False, pid, "not running")
    return AgentStatus(node.name, False, pid, word)


async def agent_status(conn: NodeConnection, tail_lines: int = LOG_TAIL_LINES) -> AgentStatus:
    """Whether the agent runs, its pid, and the last ``tail_lines`` lines of its log and output."""
    node, layout = conn.node, conn.layout
    start = sh_quote(_log_start(layout))
    script = "\n".join([
        _alive_function(node),
        f'pid=$(cat {sh_quote(layout.pid_file)} 2>/dev/null)',
        'if alive "$pid"; then echo "running $pid"; else echo "stopped $pid"; fi',
        f"[ -f {sh_quote(layout.output_file)} ] && tail -n {int(tail_lines)} {sh_quote(layout.output_file)}",
        # Only what the current (or last) start logged: earlier starts' tracebacks are history.
        f"offset=$(cat {start} 2>/dev/null || echo 0)",
        f'[ -f {sh_quote(layout.log_file)} ] && tail -c +$((offset + 1)) {sh_quote(layout.log_file)} '
        f"| tail -n {int(tail_lines)}; true",
    ])
    lines = (await conn.run(script)).stdout.splitlines()
    head = lines[0].split() if lines else ["stopped"]
    pid = int(head[1]) if len(head) > 1 and head[1].isdigit() else None
    return AgentStatus(node.name, head[0] == "running", pid, "status", tuple(lines[1:]))

