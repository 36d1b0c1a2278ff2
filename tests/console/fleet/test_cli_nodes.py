"""`litesrl nodes ...` run as a real process against the loopback sshd: output, exit codes, trust flow."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from console.fleet.inventory import load_inventory
from console.fleet.ssh import LinkState, open_ssh
from tests.console.fleet.sshd import generate_key


def litesrl(*args: str, stdin: int | None = subprocess.DEVNULL, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the CLI entry point in a fresh interpreter (HOME and friends are the test's isolated ones)."""
    kwargs = {"input": input} if input is not None else {"stdin": stdin}
    return subprocess.run([sys.executable, "-m", "console.cli.main", "nodes", *args], capture_output=True,
                          text=True, timeout=240, env={**os.environ, "COLUMNS": "200"}, **kwargs)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_list_shows_nodes_and_bad_inventory_exits_2(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[[nodes]]\nname = "a"\nhost = "10.0.0.1"\nboard = "tx2"\nmemory_budget = "3GB"\ntags = ["x"]\n')
    result = litesrl("list", "--inventory", str(good), "--json")
    assert result.returncode == 0, result.stderr
    [node] = json.loads(result.stdout)["nodes"]
    assert (node["name"], node["memory_budget"], node["ssh"]["port"], node["tags"]) == ("a", 3 * 10**9, 22, ["x"])
    table = litesrl("list", "-i", str(good))
    assert table.returncode == 0 and "10.0.0.1:22" in table.stdout and "3.00 GB" in table.stdout

    bad = tmp_path / "bad.toml"
    bad.write_text(good.read_text() + "port = 0\n")
    result = litesrl("list", "-i", str(bad))
    assert result.returncode == 2
    assert one_error_line(result) == f"error: {bad}: node 'a': port: must be an integer port 1-65535, got 0"


def test_inventory_from_environment(tmp_path, monkeypatch):
    inv = tmp_path / "env.toml"
    inv.write_text('[[nodes]]\nname = "from-env"\nhost = "h"\nboard = "nano"\nmemory_budget = "2GB"\n')
    monkeypatch.setenv("LITESRL_INVENTORY", str(inv))
    result = litesrl("list", "--json")
    assert json.loads(result.stdout)["nodes"][0]["name"] == "from-env"


@pytest.mark.ssh
def test_trust_flow_then_connect(sshd, known_hosts, make_inventory):
    inventory = str(make_inventory())
    fingerprint = sshd.host_key.get_fingerprint("sha256")

    # Unknown key: commands fail with exit 3 and say how to trust.
    refused = litesrl("status", "-i", inventory, "--json")
    assert refused.returncode == 3
    [node] = json.loads(refused.stdout)["nodes"]
    assert node["state"] == "host key unknown" and "litesrl nodes trust n1" in node["reason"]

    # No terminal and no --yes: nothing is trusted silently.
    unattended = litesrl("trust", "n1", "-i", inventory)
    assert unattended.returncode == 3
    assert "without confirmation: pass --yes" in one_error_line(unattended)
    assert not known_hosts.exists()

    trusted = litesrl("trust", "n1", "-i", inventory, "--yes", "--json")
    assert trusted.returncode == 0, trusted.stderr
    answer = json.loads(trusted.stdout)
    assert (answer["fingerprint"], answer["added"]) == (fingerprint, True)
    assert known_hosts.read_text() == sshd.known_hosts_line()

    again = litesrl("trust", "n1", "-i", inventory)
    assert again.returncode == 0 and "already trusted" in again.stdout
    assert known_hosts.read_text() == sshd.known_hosts_line()

    status = litesrl("status", "-i", inventory, "--json")
    assert status.returncode == 0, status.stdout
    [node] = json.loads(status.stdout)["nodes"]
    assert (node["state"], node["result"]["running"]) == ("up", False)


@pytest.mark.ssh
def test_trust_asks_on_a_terminal(sshd, known_hosts, make_inventory):
    inventory = str(make_inventory())
    for answer, code in (("n\n", 3), ("y\n", 0)):
        main, secondary = os.openpty()
        try:
            proc = subprocess.Popen([sys.executable, "-m", "console.cli.main", "nodes", "trust", "n1", "-i", inventory],
                                    stdin=secondary, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.write(main, answer.encode())
            out, err = proc.communicate(timeout=120)
        finally:
            os.close(main)
            os.close(secondary)
        assert proc.returncode == code, err
        assert sshd.host_key.get_fingerprint("sha256") in out
        assert f"Add it to {known_hosts}?" in out
    assert known_hosts.read_text() == sshd.known_hosts_line()


@pytest.mark.ssh
def test_trust_refuses_to_replace_a_changed_key(sshd, known_hosts, tmp_path, make_inventory):
    old = generate_key(tmp_path / "old-board-key")
    known_hosts.write_text(sshd.known_hosts_line(old))
    result = litesrl("trust", "n1", "-i", str(make_inventory()), "--yes")
    assert result.returncode == 3
    line = one_error_line(result)
    assert "has CHANGED" in line and "ssh-keygen -R" in line
    assert known_hosts.read_text() == sshd.known_hosts_line(old)


@pytest.mark.ssh
async def test_auth_failure_state_via_cli(sshd, trusted, tmp_path, make_inventory):
    stranger = tmp_path / "stranger"
    generate_key(stranger)
    inventory = make_inventory(identity=stranger)
    result = litesrl("check", "-i", str(inventory), "--json")
    assert result.returncode == 3
    [node] = json.loads(result.stdout)["nodes"]
    assert node["state"] == "auth failed"
    inv = load_inventory(inventory)
    with pytest.raises(Exception) as caught:
        await open_ssh(inv.nodes[0], inv.cluster)
    assert caught.value.status.state is LinkState.AUTH_FAILED


@pytest.mark.ssh
def test_start_makes_the_secret_on_first_use_then_needs_a_deployed_agent(sshd, trusted, tmp_path, make_inventory):
    inventory = str(make_inventory())
    secret = tmp_path / "cluster.secret"
    undeployed = litesrl("start", "-i", inventory, "--json")
    assert undeployed.returncode == 3
    assert f"created the cluster secret {secret} (mode 0600)" in undeployed.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    [node] = json.loads(undeployed.stdout)["nodes"]
    assert node["state"] == "up" and "run `litesrl nodes deploy n1`" in node["error"]
    made = secret.read_bytes()
    litesrl("start", "-i", inventory, "--json")
    assert secret.read_bytes() == made  # made once, then kept


@pytest.mark.ssh
@pytest.mark.slow
def test_deploy_then_check_via_cli(sshd, trusted, make_inventory):
    inventory = str(make_inventory())
    deployed = litesrl("deploy", "-i", inventory)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    assert "installed (new venv)" in deployed.stdout
    checked = litesrl("check", "-i", inventory, "--json")
    [node] = json.loads(checked.stdout)["nodes"]
    assert node["result"]["litesrl"] is not None
    assert not any("litesrl" in problem for problem in node["result"]["problems"])
