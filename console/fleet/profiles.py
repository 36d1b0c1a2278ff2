"""CWB profiles measured on the boards: run ``python -m nodes.profile_main`` over SSH and keep the result here.

Kept profiles live in ``$XDG_STATE_HOME/litesrl/profiles/<cluster>/<node>-<backbone>.json``, where
``litesrl train -i``, ``litesrl partition`` and the console's training dialog find them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

from console.errors import ConsoleError, FleetError
from console.fleet.inventory import Inventory, InventoryNode
from console.fleet.remote import RemoteLayout, sh_join
from console.fleet.ssh import NodeConnection
from engine.cwb.profile_format import Profile, save_profile
from engine.errors import ProfileError

PROFILE_TIMEOUT = 3600.0
"""Longest a profiling run on a board may take."""


def measured_dir(cluster: str) -> Path:
    """Folder of the profiles measured on the boards of ``cluster`` (its inventory ``name``)."""
    from console.cluster.local import state_dir

    return state_dir() / "profiles" / cluster


def measured_path(cluster: str, node: str, backbone: str) -> Path:
    """Where the profile of ``backbone`` measured on ``node`` is kept."""
    return measured_dir(cluster) / f"{node}-{backbone}.json"


def measured_profiles(cluster: str) -> list[Path]:
    """The profiles measured on the cluster's boards, newest first."""
    folder = measured_dir(cluster)
    found = list(folder.glob("*.json")) if folder.is_dir() else []
    return sorted(found, key=lambda path: path.stat().st_mtime, reverse=True)


def inventory_profile(inventory: Inventory) -> str | None:
    """The profile to train an inventory's boards with when none is named: the newest measured on them,
    else the shipped reference of their board when they are all one board that has one, else None."""
    from console.cluster.profiles import board_names

    measured = measured_profiles(inventory.cluster.name)
    if measured:
        return str(measured[0])
    boards = {node.board for node in inventory.nodes}
    return boards.pop() if len(boards) == 1 and boards <= set(board_names()) else None


def profile_command(node: InventoryNode, options: Sequence[str]) -> str:
    """The remote command that measures a CWB profile on ``node`` with ``nodes.profile_main`` ``options``."""
    layout = RemoteLayout.for_node(node)
    out = f"{layout.workdir}/profile-{node.name}.json"
    return sh_join([layout.venv_python, "-m", "nodes.profile_main", "--out", out, *options])


async def profile_over(conn: NodeConnection, options: Sequence[str], on_line: Callable[[str], None]) -> Profile:
    """Measure on the node behind ``conn`` and return the profile.

    ``options`` are ``ProfileRequest.options()`` (they include ``--json``). Raises
    :class:`ConsoleError` with the board's last error line when profiling fails there.
    """
    name = conn.node.name
    command = profile_command(conn.node, options)
    on_line(f"{name}$ {command}")
    result = await conn.run(command, timeout=PROFILE_TIMEOUT, check=False)
    for line in result.stderr.splitlines()[-20:]:
        on_line(line)
    if result.exit_status != 0:
        detail = next((line for line in reversed(result.stderr.splitlines()) if line.strip()), "no error output")
        raise ConsoleError(f"{name}: profiling failed (exit {result.exit_status}): {detail}")
    return profile_from_output(result.stdout, name)


def profile_from_output(stdout: str, node: str) -> Profile:
    """The profile in the JSON that ``litesrl profile --json`` printed on ``node``; ConsoleError if it is not there."""
    try:
        document = json.loads(stdout)
        return Profile.from_dict(document["profile"])
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise ConsoleError(f"{node}: profiling printed no profile JSON ({type(exc).__name__}: {exc})") from None
    except ProfileError as exc:
        raise ConsoleError(f"{node}: profiling produced an invalid profile: {exc}") from None


def keep(profile: Profile, cluster: str, node: str, out: Path | None = None) -> Path:
    """Write ``profile`` atomically to ``out`` (default: :func:`measured_path`); returns the path."""
    return save_profile(profile, out or measured_path(cluster, node, profile.settings.backbone))


async def measure_on_node(inventory: Inventory, node: str, options: Sequence[str], on_line: Callable[[str], None],
                          out: Path | None = None):
    """Profile ``node`` over SSH and keep the result; returns ``(path, profile)``."""
    from console.fleet.fleet import Fleet

    spec = inventory.node(node)
    async with Fleet(inventory, [spec]) as fleet:
        await fleet.connect()
        status = fleet.status(node)
        if not status.ok:
            raise FleetError(f"{node}: {status.state.value}: {status.reason}")
        profile = await profile_over(fleet.connection(node), options, on_line)
    return keep(profile, inventory.cluster.name, node, out), profile
