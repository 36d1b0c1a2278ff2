"""``litesrl-node`` / ``python -m nodes.agent_main``: run the node agent in the foreground until SIGTERM or SHUTDOWN.

It never daemonizes and writes no pid file: the SSH launcher (``console/fleet/agent.py``) and the
emulated cluster (``console/cluster/local.py``) own the process's lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import logging
import logging.handlers
import os
import signal
import socket
import sys
from pathlib import Path

from engine.errors import EngineError
from nodes.errors import NodeError

log = logging.getLogger("nodes.agent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="litesrl-node", description="Lite-SRL DHP node agent (one TCP port).")
    parser.add_argument("--host", default="127.0.0.1",
                        help="Address to listen on (default 127.0.0.1: only this machine and SSH forwards; "
                             "a board that trains with peers binds its cluster-LAN address).")
    parser.add_argument("--port", type=int, default=7700, help="TCP port (default 7700; 0 = any free port).")
    parser.add_argument("--secret-file", help="Cluster secret (default: $LITESRL_SECRET, else ~/.config/litesrl/cluster.secret).")
    parser.add_argument("--log-file", help="Append the log here, rotated (default: stderr).")
    parser.add_argument("--log-max-bytes", type=int, default=10_000_000,
                        help="Rotate the log file at this size; 3 old files are kept (default 10 MB).")
    parser.add_argument("--protect", choices=("integrity", "encrypt"), default="integrity",
                        help="Least protection of every frame: integrity (HMAC, default) or encrypt "
                             "(ChaCha20-Poly1305, needs the cryptography package).")
    parser.add_argument("--name", default=socket.gethostname(), help="Node name (default: the host name).")
    parser.add_argument("--memory-budget", help="Largest stage this node accepts, e.g. 3GB (default: physical memory).")
    parser.add_argument("--data", help="Dataset folder on this node, read when it runs stage 1.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--threads", type=int, help="Torch CPU threads (default: 1 when emulated, else torch's).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Seconds any single socket wait may last.")
    parser.add_argument("--verbose", action="store_true", help="Log at DEBUG level.")
    emulated = parser.add_argument_group("emulated board (the local cluster)")
    emulated.add_argument("--emulate", action="store_true", help="Stretch compute and transfers to the profiled board's times.")
    emulated.add_argument("--speed", type=float, default=1.0, help="Speed relative to the profiled board (default 1).")
    emulated.add_argument("--time-scale", type=float, default=1.0, help="Multiply every emulated time (0.1 = ten times faster).")
    emulated.add_argument("--bandwidth", default="1Gbit", help="Emulated link, e.g. 1Gbit or 125MB/s.")
    emulated.add_argument("--latency", default="0ms", help="Emulated per-message latency, e.g. 0.5ms.")
    return parser


def _config(args: argparse.Namespace):
    from engine.cwb.units import parse_bandwidth, parse_duration_ms, parse_size
    from engine.device import resolve_device
    from nodes.agent import AgentConfig, EmulatedBoard, default_memory_budget
    from nodes.wire import load_secret

    board = None
    if args.emulate:
        if not args.speed > 0 or not args.time_scale > 0:
            raise NodeError(f"--speed and --time-scale must be > 0, got {args.speed} and {args.time_scale}")
        board = EmulatedBoard(args.speed, args.time_scale, parse_bandwidth(args.bandwidth), parse_duration_ms(args.latency))
    budget = parse_size(args.memory_budget) if args.memory_budget else default_memory_budget()
    if budget <= 0:
        raise NodeError(f"--memory-budget must be positive, got {args.memory_budget}")
    data = Path(args.data).expanduser() if args.data else None
    if data is not None and not data.is_dir():
        raise NodeError(f"--data {data} is not a folder")
    return AgentConfig(
        name=args.name, host=args.host, port=args.port, secret=load_secret(args.secret_file),
        memory_budget=budget, data=data, board=board, device=str(resolve_device(args.device)), timeout=args.timeout,
        protect=args.protect,
    )


async def _serve(config) -> None:
    from nodes.agent import NodeAgent

    agent = NodeAgent(config)
    await agent.start()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, agent.request_stop)
    # Read by the emulated cluster and by people: the port really bound (``--port 0`` picks one).
    print(f"listening on {agent.address[0]}:{agent.address[1]}", flush=True)
    try:
        await agent.wait_stopped()
        log.info("stopping")
    finally:
        await agent.close()


def raise_fd_limit() -> None:
    """Lift the soft limit on open files to the hard one: connection caps, not the OS, should refuse first."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else max(soft, 65536), hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform, or not allowed: the default limit stays


def main(argv: list[str] | None = None) -> None:
    """Parse the options, set up logging and serve; a bad option or setting exits 1 with one line."""
    args = build_parser().parse_args(argv)
    if hasattr(signal, "SIGUSR1"):  # `kill -USR1 PID` prints every thread's stack to stderr (<log>.out)
        faulthandler.register(signal.SIGUSR1, all_threads=True)
    # A board's eMMC is small: the log file rotates, so no burst of warnings can fill it.
    handlers: list[logging.Handler] = [
        logging.handlers.RotatingFileHandler(args.log_file, maxBytes=max(4096, args.log_max_bytes), backupCount=3)
        if args.log_file else logging.StreamHandler()
    ]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=handlers,
                        format=f"%(asctime)s {args.name} %(levelname)s %(name)s: %(message)s")
    try:
        from nodes.agent import set_torch_threads

        config = _config(args)
        if config.protect == "encrypt":
            from nodes.wire.guard import Guard

            Guard("encrypt", bytes(32))  # fails now, with one line, when `cryptography` is missing
        raise_fd_limit()
        set_torch_threads(args.threads if args.threads else (1 if config.board else None))
        asyncio.run(_serve(config))
    except (NodeError, EngineError) as exc:
        log.error("%s", exc)
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
    exit_now(0)


def exit_now(code: int) -> None:
    """End the process without the interpreter's finalization. The agent has closed its connections and its
    runner by now; what is left is tearing down torch's object graph, measured at 1.3 s of CPU for an idle agent
    and ~5 s for one that has trained (three at once, quiet machine): longer than ``litesrl cluster down`` or
    ``nodes stop`` wait before SIGKILL on a loaded board. Logs and output are flushed first."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
