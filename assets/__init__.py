"""Files shipped with the package: reference CWB profiles, an example inventory, screenshots."""

from __future__ import annotations

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent


def asset_path(name: str) -> Path:
    """Absolute path of a shipped asset, e.g. ``asset_path("profiles/tx2-resnet18.json")``."""
    return ASSETS_DIR / name
