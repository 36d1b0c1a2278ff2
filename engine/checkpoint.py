"""Checkpoints: written atomically, versioned, validated on load with one-line errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError
from engine.io import atomic_write

FORMAT = "litesrl-checkpoint"
VERSION = 1
SAFE_TORCH = (2, 6)
"""First torch release whose ``torch.load(weights_only=True)`` cannot be bypassed (CVE-2025-32434). The
package floor stays lower so that boards keep JetPack's torch wheels: agents never load checkpoint files
(weights reach them over the authenticated wire); only the ground station does, and it refuses to on
older releases."""


def check_torch_for_loading(version: str = torch.__version__) -> None:
    """Raise CheckpointError when ``version`` of torch is affected by CVE-2025-32434 (before 2.6)."""
    try:
        major, minor = (int(part) for part in version.split("+")[0].split(".")[:2])
    except ValueError:
        return  # a development build we cannot read: let torch decide
    if (major, minor) < SAFE_TORCH:
        raise CheckpointError(
            f"torch {version} can be made to run code by a crafted checkpoint even with weights_only=True "
            f"(CVE-2025-32434); loading checkpoints needs torch >= {SAFE_TORCH[0]}.{SAFE_TORCH[1]} "
            "(pip install -U 'torch>=2.6')"
        )


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (tensors, dicts, numbers) plus format/version tags to ``path``."""
    data = {"format": FORMAT, "version": VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    return atomic_write(path, lambda handle: handle.write(buffer.getbuffer()))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``; raises ``CheckpointError`` naming what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    check_torch_for_loading()
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for truncated/foreign files
        raise CheckpointError(f"checkpoint {path} is not readable ({type(exc).__name__}); is it a litesrl checkpoint?") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a litesrl checkpoint")
    if data.get("version") != VERSION:
        raise CheckpointError(f"checkpoint {path} has version {data.get('version')}; this litesrl reads version {VERSION}")
    for key in ("model_config", "model"):
        if key not in data:
            raise CheckpointError(f"checkpoint {path} lacks '{key}'")
    return data
