"""The cluster secret: `litesrl nodes secret` makes it (0600, atomically) and says where; start makes it on first use."""

from __future__ import annotations

import os
import stat

import pytest
from typer.testing import CliRunner

from console.cli.main import app as cli
from console.errors import FleetError
from console.fleet.inventory import ClusterSpec
from console.fleet.secret import cluster_secret


def test_secret_is_made_once_kept_then_replaced_on_request(tmp_path):
    path = tmp_path / "conf" / "cluster.secret"
    cluster = ClusterSpec(secret_file=path)
    with pytest.raises(FleetError, match=r"no cluster secret at .*: create one with `litesrl nodes secret`"):
        cluster_secret(cluster)
    made = cluster_secret(cluster, create=True)
    assert made.created and made.source == str(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = cluster_secret(cluster, create=True)
    assert not kept.created and kept.secret == made.secret
    replaced = cluster_secret(cluster, replace=True)
    assert replaced.created and replaced.secret != made.secret


def test_the_secret_from_the_environment_is_used_as_is(monkeypatch):
    monkeypatch.setenv("LITESRL_SECRET", "0123456789abcdef0123")
    state = cluster_secret(ClusterSpec(), create=True)
    assert (state.secret, state.source, state.created) == (b"0123456789abcdef0123", "$LITESRL_SECRET", False)


def test_nodes_secret_command_says_where(tmp_path, monkeypatch):
    inventory = tmp_path / "inv.toml"
    inventory.write_text('[[nodes]]\nname = "a"\nhost = "h"\nboard = "tx2"\nmemory_budget = "3GB"\n')
    monkeypatch.setenv("LITESRL_INVENTORY", str(inventory))
    first = CliRunner().invoke(cli, ["nodes", "secret"])
    assert first.exit_code == 0
    path = first.output.split("created the cluster secret ")[1].split(" (mode 0600)")[0]
    assert path.endswith("/litesrl/cluster.secret") and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = CliRunner().invoke(cli, ["nodes", "secret"])
    assert again.output == f"the cluster secret is {path} (kept; --force makes a new one)\n"
