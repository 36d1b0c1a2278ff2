"""``litesrl-console``: parse the command line, build the app (:func:`create_app`, used by tests too) and run it.

Which cluster (highest first): ``--local N`` (the emulated cluster, started if it is not up),
``--inventory FILE``, ``$LITESRL_INVENTORY``, ``~/.config/litesrl/inventory.toml``, else the emulated
cluster if one is up.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from console.errors import ConsoleError, InventoryError
from console.fleet.inventory import load_inventory, resolve_inventory_path
from console.services.backend import FleetBackend
from console.tui.settings import ConsoleSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaunchOptions:
    """What the command line asked for."""

    inventory: Path | None = None
    """Inventory TOML of real boards (None: the environment or default file, or the emulated cluster)."""
    local: int | None = None
    """Nodes of the emulated cluster to start when none is up (None: use an inventory)."""
    profile: str = "tx2"
    """Board profile the emulated agents imitate when the console starts them."""
    time_scale: float | None = None
    """Emulated time factor when the console starts the cluster (None: the cluster's default)."""
    memory_per_node: str | None = None
    """Memory budget per emulated node when the console starts the cluster (None: the cluster's default)."""
    keep_cluster: bool = False
    """Leave an emulated cluster the console started running when it exits."""
    interval: float = 1.0
    """Seconds between telemetry readings."""


def build_parser() -> argparse.ArgumentParser:
    """The ``litesrl-console`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="litesrl-console",
        description="Operator console: fleet telemetry, CWB profiling and partitions, live DHP training.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--inventory", "-i", type=Path, metavar="FILE",
                       help="Inventory TOML of the Jetson boards (default: $LITESRL_INVENTORY, else "
                            "~/.config/litesrl/inventory.toml, else the running emulated cluster).")
    where.add_argument("--local", type=int, metavar="N",
                       help="Use the emulated cluster on this machine, starting N agents if none is up.")
    parser.add_argument("--profile", default="tx2", help="Board the emulated agents imitate (with --local; default tx2).")
    parser.add_argument("--time-scale", type=float, help="Emulated time factor (with --local), e.g. 0.1.")
    parser.add_argument("--memory-per-node", help="Memory budget of each emulated node (with --local), e.g. 3GB.")
    parser.add_argument("--keep-cluster", action="store_true",
                        help="Leave the emulated cluster running on exit when the console started it.")
    parser.add_argument("--interval", type=float, default=1.0, help="Seconds between telemetry readings (default 1).")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> LaunchOptions:
    """Parse the command line (argparse exits with its usage message on bad syntax)."""
    args = build_parser().parse_args(argv)
    if args.local is not None and args.local < 1:
        raise ConsoleError(f"--local needs at least one node, got {args.local}")
    if not 0.1 <= args.interval <= 60:
        raise ConsoleError(f"--interval must be between 0.1 and 60 seconds, got {args.interval}")
    return LaunchOptions(args.inventory, args.local, args.profile, args.time_scale, args.memory_per_node,
                         args.keep_cluster, args.interval)


def create_backend(options: LaunchOptions) -> FleetBackend:
    """The backend the options select; an inventory is read and validated now, nothing is dialled yet.

    Raises InventoryError for a bad inventory file.
    """
    if options.local is None:
        try:
            path = resolve_inventory_path(options.inventory)
        except InventoryError:
            path = None  # no inventory anywhere: the emulated cluster, if one is up
        if path is not None:
            from console.services.backend_ssh import SSHBackend

            return SSHBackend(load_inventory(path))
    from console.services.backend_local import LocalBackend

    return LocalBackend(options.local, profile=options.profile, time_scale=options.time_scale,
                        memory_per_node=options.memory_per_node, keep=options.keep_cluster)


def create_app(options: LaunchOptions | None = None, backend: FleetBackend | None = None):
    """The console app for ``options`` (or with ``backend`` given, e.g. by a test), ready to ``run()``."""
    from console.tui.app import ConsoleApp

    options = options or LaunchOptions()
    return ConsoleApp(backend or create_backend(options), ConsoleSettings(interval=options.interval))


def main(argv: Sequence[str] | None = None) -> None:
    """Run the console; a bad option prints ``error: ...`` and exits non-zero."""
    try:
        app = create_app(parse_options(argv))
    except ConsoleError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    exit_on_hangup(app)
    try:
        app.run()
    finally:
        stop_what_we_started(app)
    sys.exit(app.return_code or 0)


def exit_on_hangup(app) -> None:
    """SIGHUP (the terminal closed, an SSH session dropped) and SIGTERM end the console as `q` does: the
    app unmounts, which stops its training run and the emulated cluster it started."""

    def ask_exit(signum: int, _frame: object) -> None:
        log.warning("%s: closing the console and what it started", signal.Signals(signum).name)
        app.exit(return_code=128 + signum)

    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, ask_exit)


def stop_what_we_started(app) -> None:
    """Safety net after the app has ended in any way (a crash writing to a terminal that is gone, too):
    kill a training run still alive and stop the emulated cluster this console started."""
    run = getattr(app, "training_run", None)
    if run is not None and run.running and run.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, signal.SIGTERM)
    backend = getattr(app, "backend", None)
    if getattr(backend, "owns_cluster", False) and not getattr(backend, "keep", True):
        from console.cluster.local import down

        down()


if __name__ == "__main__":
    main()
