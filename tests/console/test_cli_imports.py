"""The whole `litesrl` CLI (every command module) imports without torch: `litesrl --help` stays fast."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_every_cli_command_module_imports_without_torch():
    code = (
        "import sys, console.cli.main as m\n"
        "assert len(m.COMMAND_MODULES) > 5\n"
        "heavy = sorted(n for n in sys.modules if n.split('.')[0] in ('torch', 'torchvision', 'textual'))\n"
        "assert not heavy, heavy[:5]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)
