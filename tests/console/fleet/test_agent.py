"""start / stop / status of a detached agent process on the node (loopback sshd, real processes).

``nodes/agent_main.py`` did not exist when these were written, so the detached-process machinery is
tested with a long-running Python command; :func:`agent_command` is checked for the argv it builds.
"""

from __future__ import annotations

import os
import stat
import sys
import time

import psutil
import pytest

from console.fleet.agent import AGENT_ENV, STALE_SETTINGS, agent_command, agent_status, start_agent, stop_agent
from console.fleet.fleet import Fleet
from console.fleet.inventory import load_inventory
from console.fleet.remote import RemoteLayout
from nodes.wire.keys import node_credential_text

pytestmark = pytest.mark.ssh

SECRET = b"0123456789abcdef0123456789abcdef"
CREDENTIAL = (node_credential_text(SECRET, "n1") + "\n").encode()
"""What `start` leaves on board n1: its node credential, never the cluster secret."""
SLEEPER = [sys.executable, "-c", "import time; print('agent up', flush=True); time.sleep(600)"]
STUBBORN = [sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ignoring TERM', flush=True); time.sleep(600)"]


def gone(pid: int, wait: float = 5.0) -> bool:
    """True once ``pid`` has exited (a zombie awaiting its reaper counts as exited)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def reap():
    """Pids to SIGKILL after the test, so a failing test leaves no sleeper behind."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass


async def test_start_detaches_survives_disconnect_and_stops(sshd, trusted, tmp_path, make_inventory, reap):
    inv = load_inventory(make_inventory())
    layout = RemoteLayout.for_node(inv.nodes[0])
    async with Fleet(inv) as fleet:
        [started] = await fleet.each(lambda conn: start_agent(conn, SECRET, SLEEPER))
    assert started.ok, started.error
    pid = started.value.pid
    reap.append(pid)
    assert started.value.action == "started" and started.value.running
    process = psutil.Process(pid)
    assert process.environ()[AGENT_ENV] == "n1"
    assert os.getsid(pid) == pid, "the agent must lead its own session (setsid)"
    secret_file = tmp_path / "node-n1" / "cluster.secret"
    assert secret_file.read_bytes() == CREDENTIAL
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert int((tmp_path / "node-n1" / "agent-n1.pid").read_text()) == pid
    assert layout.output_file.endswith("agent-n1.out")

    # The SSH connection is closed now; the agent lives on and a new connection sees it.
    time.sleep(0.3)
    assert process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    async with Fleet(inv) as fleet:
        [status] = await fleet.each(agent_status)
        assert status.value.running and status.value.pid == pid
        assert "agent up" in status.value.log_tail
        [again] = await fleet.each(lambda conn: start_agent(conn, SECRET, SLEEPER))
        assert (again.value.action, again.value.pid) == ("already running", pid)

        [stopped] = await fleet.each(lambda conn: stop_agent(conn, timeout=5))
        assert (stopped.value.action, stopped.value.pid, stopped.value.running) == ("stopped", pid, False)
        assert gone(pid)
        assert not (tmp_path / "node-n1" / "agent-n1.pid").exists()
        [status] = await fleet.each(agent_status)
        assert not status.value.running
        [again] = await fleet.each(lambda conn: stop_agent(conn))
        assert again.value.action == "not running"


async def test_stop_kills_an_agent_that_ignores_sigterm(sshd, trusted, make_inventory, reap):
    inv = load_inventory(make_inventory())
    async with Fleet(inv) as fleet:
        [started] = await fleet.each(lambda conn: start_agent(conn, SECRET, STUBBORN))
        reap.append(started.value.pid)
        began = time.monotonic()
        [stopped] = await fleet.each(lambda conn: stop_agent(conn, timeout=0.5))
    assert stopped.value.action == "killed"
    assert time.monotonic() - began < 8
    assert gone(started.value.pid)


async def test_an_agent_that_dies_at_start_is_reported_with_its_last_words(sshd, trusted, make_inventory):
    inv = load_inventory(make_inventory())
    dying = [sys.executable, "-c", "import sys; sys.exit('cannot bind port 47100: address in use')"]
    async with Fleet(inv) as fleet:
        [outcome] = await fleet.each(lambda conn: start_agent(conn, SECRET, dying))
    assert not outcome.ok
    assert outcome.error == "the agent exited right after starting: cannot bind port 47100: address in use"


async def test_start_without_a_deployed_venv_says_to_deploy(sshd, trusted, tmp_path, make_inventory):
    inv = load_inventory(make_inventory())
    async with Fleet(inv) as fleet:
        [outcome] = await fleet.each(lambda conn: start_agent(conn, SECRET))
    assert outcome.error == f"{tmp_path}/node-n1/venv/bin/python not found on the node (run `litesrl nodes deploy n1`)"


async def test_a_stale_pid_file_naming_another_process_is_never_signalled(sshd, trusted, tmp_path, make_inventory):
    inv = load_inventory(make_inventory())
    workdir = tmp_path / "node-n1"
    workdir.mkdir()
    # After a reboot the pid in the file may belong to anything -- here, this very test process.
    (workdir / "agent-n1.pid").write_text(f"{os.getpid()}\n")
    async with Fleet(inv) as fleet:
        [status] = await fleet.each(agent_status)
        assert not status.value.running
        [stopped] = await fleet.each(lambda conn: stop_agent(conn, timeout=0.5))
    assert stopped.value.action == "not running"
    assert psutil.Process(os.getpid()).is_running()


def test_agent_command_is_the_documented_argv(tmp_path):
    inv_file = tmp_path / "inv.toml"
    inv_file.write_text('[[nodes]]\nname = "tx2-1"\nhost = "h"\nboard = "tx2"\nmemory_budget = "3GB"\n'
                        'agent_port = 7711\nagent_bind = "127.0.0.1"\ndata_path = "/data/rs"\n')
    node = load_inventory(inv_file).nodes[0]
    assert agent_command(node, RemoteLayout.for_node(node)) == [
        "~/litesrl/venv/bin/python", "-m", "nodes.agent_main", "--host", "127.0.0.1", "--port", "7711",
        "--secret-file", "~/litesrl/cluster.secret", "--log-file", "~/litesrl/agent-tx2-1.log", "--name", "tx2-1",
        "--memory-budget", "3000000000", "--data", "/data/rs",
    ]


async def test_start_on_an_agent_with_other_settings_says_so_and_restart_applies_them(sshd, trusted, tmp_path,
                                                                                    make_inventory, reap):
    inv = load_inventory(make_inventory())
    other = [*SLEEPER, "--port", "7799"]  # e.g. agent_port changed in the inventory
    async with Fleet(inv) as fleet:
        [started] = await fleet.each(lambda conn: start_agent(conn, SECRET, SLEEPER))
        reap.append(started.value.pid)
        [changed] = await fleet.each(lambda conn: start_agent(conn, SECRET, other))
        assert (changed.value.action, changed.value.pid) == (STALE_SETTINGS, started.value.pid)
        new_secret = b"fedcba9876543210fedcba9876543210"
        [rekeyed] = await fleet.each(lambda conn: start_agent(conn, new_secret, SLEEPER))
        assert rekeyed.value.action == STALE_SETTINGS
        # The running agent keeps the secret it started with, and so does the file it reads.
        assert (tmp_path / "node-n1" / "cluster.secret").read_bytes() == CREDENTIAL
        [restarted] = await fleet.each(lambda conn: start_agent(conn, new_secret, other, restart=True))
        reap.append(restarted.value.pid)
        assert restarted.value.action == "restarted" and restarted.value.pid != started.value.pid
        assert gone(started.value.pid)
        assert psutil.Process(restarted.value.pid).cmdline()[-2:] == ["--port", "7799"]
        assert (tmp_path / "node-n1" / "cluster.secret").read_bytes() == (node_credential_text(new_secret, "n1") + "\n").encode()
        await fleet.each(lambda conn: stop_agent(conn, timeout=5))


async def test_status_shows_only_what_the_current_start_logged(sshd, trusted, tmp_path, make_inventory, reap):
    inv = load_inventory(make_inventory())
    workdir = tmp_path / "node-n1"
    workdir.mkdir()
    log = workdir / "agent-n1.log"
    log.write_text("Traceback (most recent call last):\nOSError: an earlier start failed\n")
    logger = [sys.executable, "-c", f"import time; open({str(log)!r}, 'a').write('this start is fine\\n'); "
                                    "print('agent up', flush=True); time.sleep(600)"]
    async with Fleet(inv) as fleet:
        [started] = await fleet.each(lambda conn: start_agent(conn, SECRET, logger))
        reap.append(started.value.pid)
        for _ in range(100):  # the interpreter may take a while to start on a busy machine
            [status] = await fleet.each(agent_status)
            if "agent up" in status.value.log_tail:
                break
            time.sleep(0.3)
        await fleet.each(lambda conn: stop_agent(conn, timeout=5))
    assert "this start is fine" in status.value.log_tail and "agent up" in status.value.log_tail
    assert not any("earlier start" in line or "Traceback" in line for line in status.value.log_tail)
