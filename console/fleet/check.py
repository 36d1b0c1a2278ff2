"""``check``: what a node is (board, L4T/JetPack, Python, torch/CUDA, memory, disk, litesrl) and what stops it training.

The probe runs in the venv the agent will use (the node's ``python`` before the first deploy) and
imports what the agent imports, so each missing module is named with the command that fixes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from console.errors import FleetError
from console.fleet.board_python import JETPACK_HINT, MIN_PYTHON, PROBE_TIMEOUT
from console.fleet.remote import sh_join, sh_quote
from console.fleet.ssh import NodeConnection
from console.fleet.wheel import local_version

JETPACK_MODULES = frozenset({"torch", "torchvision", "numpy", "PIL"})
"""Modules the board's ``python`` must provide (JetPack does); everything else comes with deploy."""

_PROBE = Path(__file__).with_name("probe_script.py")
_MARKER = "LITESRL-PROBE "
_L4T_RE = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")

# JetPack release for each L4T release, used when the nvidia-jetpack package is not installed.
_JETPACK_FOR_L4T = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.6.1": "4.6",
    "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3", "32.7.4": "4.6.4", "32.7.5": "4.6.5",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2", "35.5.0": "5.1.3",
    "35.6.0": "5.1.4", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2",
}

# Substrings of /proc/device-tree/model for each board id, most specific first
# (an AGX Xavier reports itself as "Jetson-AGX", a TX2 devkit as "quill").
_BOARD_PATTERNS = (
    ("agx-orin", ("agx orin",)), ("orin-nx", ("orin nx",)), ("orin-nano", ("orin nano",)),
    ("xavier-nx", ("xavier nx",)), ("agx-xavier", ("agx xavier", "jetson-agx")),
    ("tx2", ("tx2", "quill")), ("tx1", ("tx1",)), ("nano", ("nano",)),
)


@dataclass(frozen=True)
class CheckReport:
    """What ``check`` found on one node."""

    node: str
    """Inventory name."""
    board: str
    """The board the inventory declares."""
    detected_board: str | None
    """The board id read from the device tree (None: not a Jetson, or unrecognised)."""
    model: str | None
    """Raw ``/proc/device-tree/model``."""
    l4t: str | None
    """L4T release from ``/etc/nv_tegra_release`` (e.g. ``32.7.1``)."""
    jetpack: str | None
    """JetPack release (from the nvidia-jetpack package, else inferred from L4T)."""
    python: str
    """Version of the node's ``python``."""
    torch: str | None
    """torch version importable by that Python (None: not importable)."""
    cuda: bool | None
    """Whether torch sees CUDA (None: no torch)."""
    cuda_device: str | None
    """CUDA device name."""
    mem_total: int | None
    """Physical memory, bytes."""
    mem_available: int | None
    """Memory available now, bytes."""
    disk_path: str
    """Folder whose filesystem was measured (data_path, else workdir)."""
    disk_free: int
    """Free bytes on that filesystem."""
    litesrl: str | None
    """litesrl version installed in the node's venv (None: not deployed)."""
    problems: tuple[str, ...]
    """What would stop this node from training, one line each."""
    notes: tuple[str, ...] = ()
    """What is missing but optional (psutil, tifffile), one line each."""
    overhead: int | None = None
    """Resident bytes of a process that imported the agent's modules (torch) and made the CUDA context:
    memory the agent holds before any stage, which CWB must not plan (None: the venv cannot import them)."""

    @property
    def ready(self) -> bool:
        """True when no problem was found."""
        return not self.problems


async def check_node(conn: NodeConnection) -> CheckReport:
    """Probe the node over ``conn`` in its venv (else with its ``python``) and return the typed report.

    Raises :class:`FleetError` when the probe cannot run (Python missing, timeout).
    """
    node, layout = conn.node, conn.layout
    args = ["-", layout.venv, node.data_path or "", layout.workdir]
    venv_python = sh_quote(layout.venv_python)
    # From / so that no folder of the login directory shadows an installed package.
    command = (f"cd / && if [ -x {venv_python} ]; then {sh_join([layout.venv_python, *args])}; "
               f"else {sh_join([node.python, *args])}; fi")
    result = await conn.run(command, input=_PROBE.read_text(encoding="utf-8"), timeout=PROBE_TIMEOUT, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith(_MARKER)]
    if result.exit_status != 0 or not lines:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise FleetError(f"{node.name}: probe with {node.python} failed (exit {result.exit_status}): {detail}")
    return build_report(conn.node.name, node.board, node.memory_budget, node.data_path, layout.venv,
                        json.loads(lines[-1][len(_MARKER):]), python=node.python)


def build_report(name: str, board: str, memory_budget: int, data_path: str | None, venv: str,
                 probe: dict, python: str = "python3") -> CheckReport:
    """Turn the probe's JSON into a :class:`CheckReport`, listing the problems it reveals."""
    model = probe.get("model")
    l4t = parse_l4t(probe.get("tegra_release"))
    jetpack = (probe.get("jetpack") or "").split("-")[0] or _JETPACK_FOR_L4T.get(l4t or "")
    detected = board_from_model(model)
    missing = probe.get("missing") or {}
    overhead = (probe.get("rss_cuda") or probe.get("rss_imports")) if probe.get("torch") else None
    report = CheckReport(
        node=name, board=board, detected_board=detected, model=model, l4t=l4t, jetpack=jetpack,
        python=str(probe.get("python")), torch=probe.get("torch"), cuda=probe.get("cuda"),
        cuda_device=probe.get("cuda_device"), mem_total=probe.get("mem_total"),
        mem_available=probe.get("mem_available"), disk_path=str(probe.get("disk_path")),
        disk_free=int(probe.get("disk_free") or 0), litesrl=probe.get("litesrl"), problems=(),
        overhead=overhead,
    )
    problems = []
    if _version_tuple(report.python) < MIN_PYTHON:
        problems.append(f"Python {report.python} is older than {'.'.join(map(str, MIN_PYTHON))}, which litesrl needs")
    if report.torch is None:
        problems.append(f"torch is not importable by {probe.get('python_path')}: {probe.get('torch_error')}; "
                        f"{JETPACK_HINT}")
    elif not report.cuda and board != "generic":
        problems.append(f"torch {report.torch} sees no CUDA device")
    if detected and board != "generic" and detected != board:
        problems.append(f"inventory says board {board!r} but the node is {detected!r} ({model})")
    if report.mem_total and memory_budget > report.mem_total:
        problems.append(
            f"memory_budget {memory_budget / 1e9:.2f} GB exceeds the node's {report.mem_total / 1e9:.2f} GB"
        )
    elif report.mem_total and overhead and memory_budget + overhead > report.mem_total:
        problems.append(f"memory_budget {memory_budget / 1e9:.2f} GB plus the agent's {overhead / 1e9:.2f} GB "
                        f"runtime exceeds the node's {report.mem_total / 1e9:.2f} GB")
    if data_path and probe.get("data_exists") is False:
        problems.append(f"data_path {data_path} does not exist")
    here = local_version()
    deployed = probe.get("deployed")
    if report.litesrl is None:
        problems.append(f"litesrl is not installed in {venv} (run `litesrl nodes deploy {name}`)")
    else:
        if here and report.litesrl != here:
            problems.append(f"litesrl {report.litesrl} on the node differs from {here} here "
                            f"(run `litesrl nodes deploy {name}`)")
        if deployed is None or deployed.get("python") != python:
            made = f"from {deployed['python']}" if deployed and deployed.get("python") else "by an older deploy"
            problems.append(f"the venv {venv} was made {made}, not the inventory's python {python} "
                            f"(run `litesrl nodes deploy {name}`, which makes it afresh)")
        problems.extend(_missing_module(name, venv, module, error) for module, error in missing.items()
                        if module != "torch" or report.torch is not None)
    notes = [f"{module} is not installed (optional: `litesrl nodes bundle` where an index is reachable, then "
             f"`litesrl nodes deploy {name}`)" for module in probe.get("optional_missing") or ()]
    return replace(report, problems=tuple(problems), notes=tuple(notes))


def _missing_module(node: str, venv: str, module: str, error: str) -> str:
    """One line naming a module the venv cannot import and the command that fixes it."""
    absent = error.split("No module named ", 1)[1].strip("'\"") if "No module named " in error else None
    root = (absent or module).split(".")[0]
    if root in JETPACK_MODULES:
        fix = f"{JETPACK_HINT}, then `litesrl nodes deploy {node} --rebuild`"
    elif root in ("nodes", "engine", "console", "assets"):
        fix = f"run `litesrl nodes deploy {node}`"
    else:
        fix = f"run `litesrl nodes bundle` where an index is reachable, then `litesrl nodes deploy {node}`"
    return f"{venv} cannot import {module} ({error}): {fix}"


def parse_l4t(release_line: str | None) -> str | None:
    """``"# R32 (release), REVISION: 7.1, ..."`` -> ``"32.7.1"``; None when absent or unrecognised."""
    match = _L4T_RE.search(release_line or "")
    if not match:
        return None
    major, revision = match.groups()
    parts = [major, *revision.split(".")]
    return ".".join((parts + ["0"])[:3])


def board_from_model(model: str | None) -> str | None:
    """The board id (see ``inventory.BOARDS``) named by a device-tree model string, or None."""
    text = (model or "").lower()
    if "jetson" not in text and "quill" not in text:
        return None
    for board, needles in _BOARD_PATTERNS:
        if any(needle in text for needle in needles):
            return board
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", text)[:2]) or (0,)
