"""What a node's ``python`` offers the agent: its version, machine, the folders it imports from, and its torch.

Run before every deploy: a board without torch is refused (JetPack's torch cannot come from an
index), and the folders become the deployed venv's view of the board's packages, so the agent
sees exactly what ``python`` sees, be it JetPack's system Python or a venv or conda env that
holds torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from console.errors import FleetError
from console.fleet.remote import sh_join
from console.fleet.ssh import NodeConnection

PROBE_TIMEOUT = 180.0
"""Seconds allowed; importing torch on a TX2 alone takes 10-20 s."""

MIN_PYTHON = (3, 10)
"""Oldest Python litesrl installs on (``requires-python`` in pyproject.toml)."""

JETPACK_HINT = ("JetPack provides torch, torchvision, numpy and pillow for its python3 (NVIDIA's torch wheel for "
                "the board's JetPack); set `python` in the inventory to a Python that imports torch")
"""What to do about a Python without torch, said wherever one is found."""

# Python 3.6 compatible: it runs under whatever the inventory names, old JetPacks included.
_PROBE = r"""
import json, os, platform, sys, sysconfig
stdlib = os.path.realpath(sysconfig.get_paths()["stdlib"])  # "platstdlib" would hold a venv's site-packages
paths = [p for p in sys.path[1:] if os.path.isdir(p)
         and not (os.path.realpath(p) == stdlib or os.path.realpath(p).startswith(stdlib + os.sep))]
info = {"version": platform.python_version(), "machine": platform.machine(), "executable": os.path.realpath(sys.executable),
        "paths": paths, "torch": None, "torch_error": None}
try:
    import torch
    info["torch"] = torch.__version__
except Exception as exc:
    info["torch_error"] = "%s: %s" % (type(exc).__name__, exc)
print("LITESRL-PYTHON " + json.dumps(info))
"""


@dataclass(frozen=True)
class BoardPython:
    """The node's ``python`` as probed."""

    command: str
    """The inventory's ``python``."""
    version: str
    """``platform.python_version()``."""
    machine: str
    """``platform.machine()``: ``aarch64`` on a Jetson."""
    executable: str
    """The interpreter file after symlinks."""
    paths: tuple[str, ...]
    """Folders it imports packages from, beyond the standard library, in its order."""
    torch: str | None
    """torch version, None when it cannot import torch."""
    torch_error: str | None
    """Why torch failed to import."""

    @property
    def tag(self) -> str:
        """``aarch64-py3.10``: the wheelhouse this board takes (see :mod:`console.fleet.bundle`)."""
        return f"{self.machine}-py{'.'.join(self.version.split('.')[:2])}"


async def probe_python(conn: NodeConnection) -> BoardPython:
    """Probe the node's ``python``; raises :class:`FleetError` when it does not run."""
    python = conn.node.python
    result = await conn.run(sh_join([python, "-c", _PROBE]), timeout=PROBE_TIMEOUT, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("LITESRL-PYTHON ")]
    if result.exit_status != 0 or not lines:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise FleetError(f"{conn.node.name}: {python} does not run (exit {result.exit_status}): {detail}")
    data = json.loads(lines[-1].split(" ", 1)[1])
    return BoardPython(python, data["version"], data["machine"], data["executable"], tuple(data["paths"]),
                       data["torch"], data["torch_error"])


def require_trainable(node: str, board: BoardPython) -> None:
    """Raise :class:`FleetError` (one line) unless ``board`` is new enough and imports torch."""
    version = tuple(int(part) for part in board.version.split(".")[:2])
    if version < MIN_PYTHON:
        raise FleetError(f"{node}: {board.command} is Python {board.version}; litesrl needs "
                         f"{'.'.join(map(str, MIN_PYTHON))} or newer (JetPack 6); set `python` in the inventory")
    if board.torch is None:
        raise FleetError(f"{node}: {board.command} cannot import torch ({board.torch_error}); {JETPACK_HINT}")
