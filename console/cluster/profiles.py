"""Which CWB profile a cluster trains with: a shipped board profile by name (``tx2``) or a profile file."""

from __future__ import annotations

from pathlib import Path

from assets import asset_path
from console.errors import ConsoleError


def board_names() -> list[str]:
    """Boards with shipped reference profiles (``assets/profiles/<board>-<backbone>.json``)."""
    return sorted({path.stem.rsplit("-", 1)[0] for path in asset_path("profiles").glob("*-resnet*.json")})


def resolve_profile(name: str, backbone: str = "resnet18") -> Path:
    """``tx2`` -> the shipped ``tx2-<backbone>.json``; anything with a suffix or a slash is a file path."""
    if name.endswith(".json") or "/" in name:
        path = Path(name).expanduser()
        if not path.is_file():
            raise ConsoleError(f"profile file {path} does not exist")
        return path
    path = asset_path(f"profiles/{name}-{backbone}.json")
    if not path.is_file():
        shipped = sorted(p.stem for p in asset_path("profiles").glob(f"{name}-*.json"))
        if shipped:
            raise ConsoleError(f"no {backbone} profile for board {name!r}; shipped: {', '.join(shipped)}")
        raise ConsoleError(f"unknown board profile {name!r}; choose one of "
                           f"{', '.join(board_names())} or give a profile .json file")
    return path
