"""Inventory parsing: the example file, precise one-line errors, precedence and ~/.ssh/config aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from assets import asset_path
from console.errors import InventoryError
from console.fleet.inventory import (
    default_inventory_path,
    load_inventory,
    resolve_inventory_path,
)
from console.fleet.target import resolve_target

GOOD_NODE = '[[nodes]]\nname = "a"\nhost = "10.0.0.1"\nboard = "tx2"\nmemory_budget = "3GB"\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.toml"
    path.write_text(text)
    return path


def test_example_inventory_is_six_tx2_as_in_the_paper():
    inv = load_inventory(asset_path("inventory.example.toml"))
    assert [n.name for n in inv.nodes] == [f"tx2-{i}" for i in range(1, 7)]
    assert {n.board for n in inv.nodes} == {"tx2"}
    assert all(n.memory_budget == 3 * 10**9 for n in inv.nodes)
    assert inv.cluster.user == "nvidia"
    assert inv.nodes[0].venv == "~/litesrl/venv"
    assert [n.name for n in inv.select(tags=["chain-b"])] == ["tx2-4", "tx2-5", "tx2-6"]
    assert [n.name for n in inv.select(["tx2-2", "tx2-1"])] == ["tx2-1", "tx2-2"]
    # DHP links the boards to each other: each agent binds the rack LAN address the others reach.
    assert all(n.agent_bind == n.host for n in inv.nodes)


def test_the_readme_flow_names_nodes_and_the_cluster_of_the_example_inventory():
    import re

    inv = load_inventory(asset_path("inventory.example.toml"))
    readme = (Path(asset_path("inventory.example.toml")).parents[1] / "README.md").read_text()
    named = re.findall(r"litesrl nodes (?:trust|profile) (\S+)", readme)
    assert named and set(named) <= {n.name for n in inv.nodes}
    assert f"/profiles/{inv.cluster.name}/" in readme


def test_defaults_and_relative_paths(tmp_path):
    inv = load_inventory(write(tmp_path, '[cluster]\nidentity_file = "keys/id"\n' + GOOD_NODE))
    node = inv.nodes[0]
    assert (node.port, node.user, node.python, node.workdir, node.venv) == (
        None, None, "python3", "~/litesrl", "~/litesrl/venv")
    assert (node.agent_port, node.agent_bind, node.tags, node.data_path) == (7700, "0.0.0.0", (), None)
    assert inv.cluster.identity_file == tmp_path / "keys" / "id"


@pytest.mark.parametrize(
    "text, message",
    [
        ("[cluster]\nsecrte_file = 'x'\n" + GOOD_NODE, r"inv\.toml: \[cluster\]: unknown key 'secrte_file' \(known: "),
        (GOOD_NODE + "colour = 'red'\n", r"inv\.toml: node 'a': unknown key 'colour'"),
        ('[[nodes]]\nname = "a"\nboard = "tx2"\nmemory_budget = "3GB"\n', r"node 'a': missing 'host'"),
        ('[[nodes]]\nhost = "h"\nboard = "tx2"\nmemory_budget = "3GB"\n', r"node #1: missing 'name'"),
        (GOOD_NODE + "port = 70000\n", r"node 'a': port: must be an integer port 1-65535, got 70000"),
        (GOOD_NODE + "port = '22'\n", r"node 'a': port: must be an integer port 1-65535, got '22'"),
        (GOOD_NODE + "agent_port = true\n", r"node 'a': agent_port: must be an integer port"),
        (GOOD_NODE + GOOD_NODE.replace("10.0.0.1", "10.0.0.2"), r"node 'a': duplicate name"),
        (GOOD_NODE + GOOD_NODE.replace('"a"', '"b"'),
         r"node 'b': agent_port 7700 already used on host '10.0.0.1' by node 'a'"),
        (GOOD_NODE.replace('"3GB"', '"3 parsecs"'), r"node 'a': memory_budget: .*unknown unit 'parsecs'"),
        (GOOD_NODE.replace('"3GB"', '"lots"'), r"node 'a': memory_budget: size 'lots' is not a number with a unit"),
        (GOOD_NODE.replace('"3GB"', '"0MB"'), r"node 'a': memory_budget: must be more than zero"),
        (GOOD_NODE.replace('"tx2"', '"tx3"'), r"node 'a': board: unknown board 'tx3' \(one of: tx2, "),
        (GOOD_NODE.replace('"a"', '"bad name"'), r"node 'bad name': name: 'bad name' must be"),
        (GOOD_NODE + 'data_path = "data/x"\n', r"node 'a': data_path: remote path 'data/x' must be absolute"),
        (GOOD_NODE + "tags = 'x'\n", r"node 'a': tags: must be a list of non-empty strings"),
        (GOOD_NODE + 'host2 = ""\n', r"unknown key 'host2'"),
        (GOOD_NODE.replace('"10.0.0.1"', '""'), r"node 'a': host: must not be empty"),
        ("[cluster]\nconnect_timeout = -1\n" + GOOD_NODE, r"\[cluster\]: connect_timeout: must be a positive"),
        ("[cluster]\nname = 'x'\n", r"inv\.toml: no nodes: add at least one \[\[nodes\]\] table"),
        ("nodes = [1]\n", r"node #1: must be a table"),
        ("[cluster\n", r"inv\.toml: not valid TOML: "),
        ("extra = 1\n" + GOOD_NODE, r"inv\.toml: inventory: unknown key 'extra'"),
    ],
)
def test_bad_inventories_give_one_precise_line(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message) as caught:
        load_inventory(write(tmp_path, text))
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_two_nodes_on_one_host_need_distinct_workdirs(tmp_path):
    two = GOOD_NODE + GOOD_NODE.replace('"a"', '"b"') + "agent_port = 7701\n"
    with pytest.raises(InventoryError, match=r"node 'b': workdir '~/litesrl' already used on host"):
        load_inventory(write(tmp_path, two))
    assert len(load_inventory(write(tmp_path, two + 'workdir = "~/litesrl-b"\n')).nodes) == 2


@pytest.mark.parametrize("text, size", [("3GB", 3 * 10**9), ("3GiB", 3 * 1024**3), ("512MiB", 512 * 1024**2), ("2048", 2048)])
def test_memory_budget_uses_the_same_units_as_the_cli(tmp_path, text, size):
    node = GOOD_NODE.replace('memory_budget = "3GB"', f'memory_budget = "{text}"')
    assert load_inventory(write(tmp_path, node)).nodes[0].memory_budget == size


def test_unknown_node_lists_the_known_ones(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD_NODE))
    with pytest.raises(InventoryError, match=r"no node named 'zz' \(nodes: a\)"):
        inv.node("zz")
    with pytest.raises(InventoryError, match=r"no node matches tags \['gpu'\]"):
        inv.select(tags=["gpu"])


def test_precedence_command_line_then_environment_then_default(tmp_path, monkeypatch):
    default = default_inventory_path()
    assert default == Path.home() / ".config" / "litesrl" / "inventory.toml"
    with pytest.raises(InventoryError, match="no inventory: pass --inventory FILE, set \\$LITESRL_INVENTORY"):
        resolve_inventory_path(None)
    default.parent.mkdir(parents=True)
    default.write_text(GOOD_NODE)
    assert resolve_inventory_path(None) == default
    monkeypatch.setenv("LITESRL_INVENTORY", str(tmp_path / "env.toml"))
    assert resolve_inventory_path(None) == tmp_path / "env.toml"
    assert resolve_inventory_path(tmp_path / "cli.toml") == tmp_path / "cli.toml"


def test_ssh_config_alias_supplies_hostname_user_port_and_key(tmp_path):
    ssh_dir = Path.home() / ".ssh"
    ssh_dir.mkdir()
    (ssh_dir / "config").write_text(
        "Host tx2-a\n    HostName 10.1.2.3\n    User nvidia\n    Port 2200\n    IdentityFile ~/.ssh/tx2_key\n"
    )
    text = (
        '[cluster]\nuser = "ubuntu"\nidentity_file = "/keys/cluster"\n'
        '[[nodes]]\nname = "a"\nhost = "tx2-a"\nboard = "tx2"\nmemory_budget = "3GB"\n'
        '[[nodes]]\nname = "b"\nhost = "10.9.9.9"\nboard = "tx2"\nmemory_budget = "3GB"\n'
        '[[nodes]]\nname = "c"\nhost = "tx2-a"\nport = 22\nuser = "root"\nboard = "tx2"\nmemory_budget = "3GB"\n'
        'identity_file = "/keys/c"\nworkdir = "~/c"\nagent_port = 7800\n'
    )
    inv = load_inventory(write(tmp_path, text))
    alias, plain, override = (resolve_target(n, inv.cluster) for n in inv.nodes)
    # The alias takes everything from ~/.ssh/config, which beats the [cluster] defaults.
    assert (alias.hostname, alias.port, alias.username) == ("10.1.2.3", 2200, "nvidia")
    assert alias.identity_files == (ssh_dir / "tx2_key",)
    assert alias.known_hosts_name == "[10.1.2.3]:2200"
    # A host with no ssh config entry gets the cluster defaults.
    assert (plain.hostname, plain.port, plain.username) == ("10.9.9.9", 22, "ubuntu")
    assert plain.identity_files == (Path("/keys/cluster"),)
    assert plain.known_hosts_name == "10.9.9.9"
    # The node's own keys beat the ssh config.
    assert (override.hostname, override.port, override.username) == ("10.1.2.3", 22, "root")
    assert override.identity_files == (Path("/keys/c"),)
