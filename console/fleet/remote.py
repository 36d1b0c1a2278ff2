"""Where litesrl keeps its files on a node, and how to quote those paths for the node's POSIX shell."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from console.fleet.inventory import InventoryNode


def sh_quote(arg: str) -> str:
    """Quote ``arg`` for a POSIX shell, keeping a leading ``~/`` expandable (``"$HOME"/rest``)."""
    if arg == "~":
        return '"$HOME"'
    if arg.startswith("~/"):
        return '"$HOME"/' + shlex.quote(arg[2:])
    return shlex.quote(arg)


def sh_join(argv: Iterable[str]) -> str:
    """A shell command line running ``argv`` with every argument quoted by :func:`sh_quote`."""
    return " ".join(sh_quote(arg) for arg in argv)


def sftp_path(path: str) -> str:
    """``path`` as SFTP understands it: SFTP does not expand ``~``, but relative paths start at home."""
    if path == "~":
        return "."
    return path[2:] if path.startswith("~/") else path


@dataclass(frozen=True)
class RemoteLayout:
    """The files litesrl owns under a node's ``workdir`` (paths may start with ``~/``)."""

    workdir: str
    """The node's litesrl folder."""
    venv: str
    """The virtual environment litesrl is installed into."""
    wheels: str
    """Folder the deployed wheels are uploaded to."""
    secret_file: str
    """The cluster secret (mode 0600) the agent authenticates peers with."""
    log_file: str
    """The agent's own log (``--log-file``)."""
    output_file: str
    """The agent's stdout and stderr: tracebacks from before its logging starts land here."""
    pid_file: str
    """Process id of the detached agent."""

    @property
    def venv_python(self) -> str:
        """The venv's interpreter, which runs the agent."""
        return f"{self.venv}/bin/python"

    @classmethod
    def for_node(cls, node: InventoryNode) -> RemoteLayout:
        """The layout for ``node`` (file names carry the node name, so two nodes may share a machine)."""
        work = node.workdir.rstrip("/") or "/"
        return cls(
            workdir=work,
            venv=node.venv.rstrip("/") or "/",
            wheels=f"{work}/wheels",
            secret_file=f"{work}/cluster.secret",
            log_file=f"{work}/agent-{node.name}.log",
            output_file=f"{work}/agent-{node.name}.out",
            pid_file=f"{work}/agent-{node.name}.pid",
        )
