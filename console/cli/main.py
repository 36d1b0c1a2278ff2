"""Entry point of `litesrl`: builds the typer app and turns domain errors into one line + exit code."""

from __future__ import annotations

import faulthandler
import importlib
import logging
import signal
import sys

import typer

from console.errors import ConsoleError
from engine.errors import EngineError
from nodes.errors import NodeError

# Each module exposes `register(app)`; torch is imported inside the commands, never here,
# so `litesrl --help` and the console stay fast on a laptop.
COMMAND_MODULES = (
    "console.cli.pretrain",
    "console.cli.evaluate",
    "console.cli.data",
    "console.cli.demo",
    "console.cli.tegrastats",
    "console.cli.nodes",
    "console.cli.partition",
    "console.cli.profile",
    "console.cli.cluster",
    "console.cli.train",
    "console.cli.status",
    "console.cli.predict",
    "console.cli.export",
)

app = typer.Typer(
    name="litesrl",
    help="Lite-SRL self-supervised training on a Jetson cluster (or an emulated one on this machine).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)



@app.callback()
def _root() -> None:
    """Lite-SRL self-supervised training on a Jetson cluster (or an emulated one on this machine)."""


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(app)


def main() -> None:
    """Run the CLI; a domain error prints `error: <one line>` to stderr and exits non-zero."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints every thread's stack: a hung run explains itself
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    importlib.import_module("console.cli.train").enable_exit_watchdog()
    try:
        app()
    except ConsoleError as exc:
        _fail(exc, exc.exit_code)
    except (EngineError, NodeError) as exc:
        _fail(exc, 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)


def _fail(message: object, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(code)


if __name__ == "__main__":
    main()
