"""The package's lazy public API: the console can reach message types and secrets without torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import nodes.wire
from tests.conftest import REPO_ROOT


def test_metadata_and_secret_helpers_import_without_torch():
    code = (
        "import sys\n"
        "from nodes.wire import MessageType, FrameLimits, LinkShape, load_secret, write_secret\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_every_public_name_resolves_and_unknown_names_fail():
    for name in set(nodes.wire.__all__) - {"Handler"}:  # Handler is a Callable[...] alias, nameless
        assert getattr(nodes.wire, name).__name__ == name
    assert nodes.wire.Handler is not None
    with pytest.raises(AttributeError, match="no attribute 'Conection'"):
        nodes.wire.Conection  # noqa: B018  (the attribute access is what must raise)
