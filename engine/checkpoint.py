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
