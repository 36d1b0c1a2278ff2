"""Node descriptions and the mixed-cluster nodes file."""

import pytest

from engine.cwb.nodes_spec import NodeSpec, identical_nodes, load_nodes_file
from engine.errors import ConfigError

MIXED = """
[network]
bandwidth = "1Gbit"
latency = "0.2ms"

[[nodes]]
name = "tx2"
count = 3
memory_budget = "3GB"

[[nodes]]
name = "orin"
board = "Jetson AGX Orin"
speed = 2.5
memory_budget = "12GiB"

[[link]]
from = "orin"
to = "tx2-1"
bandwidth = "10Gbit"
"""


def test_mixed_file(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text(MIXED)
    spec = load_nodes_file(path)
    assert [n.name for n in spec.nodes] == ["tx2-1", "tx2-2", "tx2-3", "orin"]
    assert spec.nodes[0] == NodeSpec("tx2-1", 3_000_000_000, 1.0, "Jetson TX2")
    assert spec.nodes[3].speed == 2.5 and spec.nodes[3].memory_bytes == 12 * 2**30
    net = spec.network()
    assert net.bandwidth == 125_000_000 and net.latency_ms == pytest.approx(0.2)
    assert net.bandwidth_between("orin", "tx2-1") == 1_250_000_000
    assert net.bandwidth_between("tx2-1", "orin") == 125_000_000
    # The command line wins over the file.
    assert spec.network(bandwidth=1e6, latency_ms=0.0).bandwidth == 1e6


def test_identical_nodes():
    nodes = identical_nodes(3, 3 * 10**9)
    assert [n.name for n in nodes] == ["node-1", "node-2", "node-3"]
    assert {n.memory_bytes for n in nodes} == {3 * 10**9}
    with pytest.raises(ConfigError, match="at least 1"):
        identical_nodes(0, 1)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[nodes]]\nname = 'a'\n", r"\[\[nodes\]\] #1: missing 'memory_budget'"),
        ("[[nodes]]\nname = 'a'\nmemory_budget = '3Gbit'\n", r"\[\[nodes\]\] #1 \(a\): size '3Gbit' is in bits"),
        ("[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\nspeed = 0\n", "speed must be greater than zero"),
        ("[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\nram = 1\n", r"unknown key\(s\) \['ram'\]"),
        ("[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\n[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\n", "'a' is used twice"),
        ("[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\n[[link]]\nfrom = 'a'\nto = 'b'\nbandwidth = '1Gbit'\n",
         "names unknown node 'b'"),
        ("[network]\nbandwidth = '1Gb'\n[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\n", "ambiguous"),
        ("[gpus]\nx = 1\n", r"unknown section\(s\) \['gpus'\]"),
        ("[nodes]\nx = 1\n", r"no \[\[nodes\]\] entries"),
        ("[[node]]\nname = 'a'\nmemory_budget = '3GB'\n", r"\[\[node\]\] is the old name of \[\[nodes\]\]"),
        ("[[nodes]]\nname = 'a'\nmemory = '3GB'\n", r"'memory' is the old name of 'memory_budget'"),
        ("name = ", "not valid TOML"),
        ("", r"no \[\[nodes\]\] entries"),
    ],
)
def test_bad_nodes_files(tmp_path, text, fragment):
    path = tmp_path / "nodes.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as caught:
        load_nodes_file(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_missing_nodes_file(tmp_path):
    with pytest.raises(ConfigError, match="nodes file not found"):
        load_nodes_file(tmp_path / "none.toml")


def test_network_needs_a_bandwidth(tmp_path):
    path = tmp_path / "nodes.toml"
    path.write_text("[[nodes]]\nname = 'a'\nmemory_budget = '3GB'\n")
    with pytest.raises(ConfigError, match="no bandwidth given"):
        load_nodes_file(path).network()


def test_an_inventory_is_a_nodes_file_and_the_key_sets_agree():
    """One node format: the shipped inventory plans as it is, and every inventory key is known here."""
    from pathlib import Path

    from console.fleet import inventory
    from engine.cwb.nodes_spec import INVENTORY_ONLY_KEYS, NODE_KEYS

    example = Path(__file__).resolve().parents[3] / "assets" / "inventory.example.toml"
    read = load_nodes_file(example)
    assert [node.name for node in read.nodes] == [node.name for node in inventory.load_inventory(example).nodes]
    assert all(node.memory_bytes == 3 * 10**9 for node in read.nodes)
    assert inventory.NODE_KEYS <= NODE_KEYS | INVENTORY_ONLY_KEYS
