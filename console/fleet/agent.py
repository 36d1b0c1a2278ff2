"""``start`` / ``stop`` / ``status`` of the node agent, run detached on the node so it outlives the SSH session.

The agent is launched with ``setsid nohup`` (its own session, stdin from /dev/null, output to a file
on the node) and its pid is written to a pid file. The process also carries the environment
variable ``LITESRL_AGENT=<node>``; every liveness check reads it back from ``/proc/<pid>/environ``, so a
stale pid file whose pid was reused after a reboot is never mistaken for the agent (nor killed).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Sequence

from console.errors import FleetError
from console.fleet.inventory import NodeSpec
from console.fleet.remote import RemoteLayout, sh_join, sh_quote
from console.fleet.ssh import NodeConnection

AGENT_ENV = "LITESRL_AGENT"
"""Environment variable that marks the agent process with its node name."""

START_SETTLE = 1.0
"""Seconds to wait after launching before checking the agent is still alive."""

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
    """What the command did: ``started``, ``already running``, ``stopped`` (SIGTERM), ``killed``
    (SIGKILL after the timeout), ``not running`` or ``status``."""
    log_tail: tuple[str, ...] = ()
    """Last lines of the agent's log and output files."""


def agent_command(node: NodeSpec, layout: RemoteLayout) -> list[str]:
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


def _alive_function(node: NodeSpec) -> str:
    # A shell function: true when pid $1 is alive and carries our marker (zombies have an empty environ).
    marker = sh_quote(f"{AGENT_ENV}={node.name}")
    return (
        'alive() { [ -n "$1" ] && [ -r "/proc/$1/environ" ] && '
        f"tr '\\000' '\\n' < \"/proc/$1/environ\" 2>/dev/null | grep -qxF {marker}; }}"
    )


async def start_agent(conn: NodeConnection, secret: bytes, command: Sequence[str] | None = None) -> AgentStatus:
    """Copy the node's credential (derived from the cluster ``secret``, never the secret itself: a board
    cannot act as the coordinator of another) to the node (0600) and start the agent detached, unless it
    runs already.

    ``command`` replaces :func:`agent_command` (the argv is run from the node's workdir). Raises
    :class:`FleetError` when the program is missing or the agent dies within :data:`START_SETTLE`
    seconds, quoting the end of its output.
    """
    node, layout = conn.node, conn.layout
    argv = list(command) if command is not None else agent_command(node, layout)
    pid_file, secret_file = sh_quote(layout.pid_file), sh_quote(layout.secret_file)
    script = "\n".join([
        "set -e",
        _alive_function(node),
        "umask 077",
        f"mkdir -p {sh_quote(layout.workdir)}",
        # The secret arrives on stdin and is renamed into place, so it is never half-written.
        f"cat > {secret_file}.tmp",
        f"mv -f {secret_file}.tmp {secret_file}",
        f'pid=$(cat {pid_file} 2>/dev/null || true)',
        'if alive "$pid"; then echo "running $pid"; exit 0; fi',
        f"command -v {sh_quote(argv[0])} >/dev/null 2>&1 || {{ echo \"missing\"; exit 0; }}",
        f"cd {sh_quote(layout.workdir)}",
        f"{AGENT_ENV}={sh_quote(node.name)} setsid nohup {sh_join(argv)} "
        f">> {sh_quote(layout.output_file)} 2>&1 < /dev/null &",
        f"echo $! > {pid_file}",
        'echo "started $!"',
    ])
    from nodes.wire.keys import node_credential_text

    answer = (await conn.run(script, input=node_credential_text(secret, node.name) + "\n")).stdout.split()
    if answer[:1] == ["missing"]:
        raise FleetError(f"{node.name}: {argv[0]} not found on the node (run `litesrl nodes deploy {node.name}`)")
    if answer[:1] == ["running"]:
        return AgentStatus(node.name, True, int(answer[1]), "already running")
    pid = int(answer[1])
    await asyncio.sleep(START_SETTLE)
    status = await agent_status(conn)
    if not status.running or status.pid != pid:
        tail = next((line for line in reversed(status.log_tail) if line.strip()), "no output")
        raise FleetError(f"{node.name}: the agent exited right after starting: {tail}")
    return AgentStatus(node.name, True, pid, "started", status.log_tail)


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
        f'if alive "$pid"; then echo "stuck $pid"; exit 0; fi',
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
    script = "\n".join([
        _alive_function(node),
        f'pid=$(cat {sh_quote(layout.pid_file)} 2>/dev/null)',
        'if alive "$pid"; then echo "running $pid"; else echo "stopped $pid"; fi',
        f"for f in {sh_quote(layout.output_file)} {sh_quote(layout.log_file)}; do "
        f'[ -f "$f" ] && tail -n {int(tail_lines)} "$f"; done; true',
    ])
    lines = (await conn.run(script)).stdout.splitlines()
    head = lines[0].split() if lines else ["stopped"]
    pid = int(head[1]) if len(head) > 1 and head[1].isdigit() else None
    return AgentStatus(node.name, head[0] == "running", pid, "status", tuple(lines[1:]))

