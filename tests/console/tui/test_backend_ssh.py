"""The SSH fleet backend against a real OpenSSH sshd: telemetry streamed from the node, host keys refused."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from console.fleet.inventory import load_inventory
from console.fleet.ssh import LinkState, NodeStatus
from console.services.backend import Reading
from console.services.backend_ssh import SSHBackend
from console.tui.launch import LaunchOptions, create_backend

pytestmark = pytest.mark.ssh

REPO = Path(__file__).resolve().parents[3]


async def first_updates(backend: SSHBackend, until, timeout: float = 90.0) -> list:
    """Updates until ``until(updates)`` holds."""
    seen = []
    updates = backend.updates(0.5)

    async def collect() -> None:
        async for update in updates:
            seen.append(update)
            if until(seen):
                return

    try:
        await asyncio.wait_for(collect(), timeout)
    finally:
        await updates.aclose()
    return seen


async def test_a_trusted_node_streams_its_telemetry_over_ssh(sshd, trusted, make_inventory, node_venv):
    inventory = load_inventory(make_inventory(names=("n1",), node_extra=f'venv = "{node_venv}"'))
    backend = create_backend(LaunchOptions(inventory=inventory.path))
    assert isinstance(backend, SSHBackend) and backend.cluster_argument == str(inventory.path)
    await backend.start()
    assert backend.nodes[0].name == "n1" and backend.nodes[0].address.endswith(f":{sshd.port}")
    try:
        seen = await first_updates(backend, lambda s: sum(isinstance(u, Reading) for u in s) >= 2)
    finally:
        await backend.close()
    assert seen[0] == NodeStatus("n1", LinkState.UP)
    readings = [u for u in seen if isinstance(u, Reading)]
    assert readings[0].node == "n1" and readings[0].agent is None
    assert readings[0].sample.source == "psutil" and readings[0].sample.cpus  # this machine, via nodes.telemetry_main
    assert readings[1].received > readings[0].received


async def test_an_unknown_host_key_is_reported_with_how_to_trust_it(sshd, known_hosts, make_inventory, node_venv):
    inventory = load_inventory(make_inventory(names=("n1",), node_extra=f'venv = "{node_venv}"'))
    backend = SSHBackend(inventory)
    await backend.start()
    try:
        seen = await first_updates(backend, lambda s: bool(s), timeout=30)
    finally:
        await backend.close()
    assert seen[0].state is LinkState.HOST_KEY_UNKNOWN
    assert "litesrl nodes trust n1" in seen[0].reason
