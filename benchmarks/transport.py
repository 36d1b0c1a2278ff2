"""Loopback throughput of the DHP transport (unprotected, with per-frame integrity, encrypted) against a raw
socket, asyncio streams and torch gloo, and the speed of the candidate MAC and AEAD primitives.

One command: ``.venv/bin/python benchmarks/transport.py``. For each method a receiver process takes
``--messages`` float32 tensors of ``--mb`` megabytes (default 12.8 MB, about a (16, 64, 56, 56) feature
map) and acknowledges each with a small message; the sender (this process) times the run, so every figure
is one-way throughput with a per-message ack, the pattern of a pipeline stage. Trials go round the methods
in turn and the median is kept; CPU time per message on each side is reported too, since wall-clock
figures on a shared machine move with other people's load. Also times the same tensor, unprotected and with
integrity, on emulated 1 and 10 Gbit/s links. Prints the tables and writes its section of BENCHMARKS.md.

The litesrl rows use the production path of the agents: ``Connection.send`` / ``Connection.recv`` (no
``into=``: a fresh tensor per message, as ``nodes.op_frames.recv_op`` does). "unprotected" is that same
transport code on a connection without session keys (what every frame cost before frames carried a MAC);
"integrity" and "encrypt" run the real handshake and protect every frame (``nodes.wire.guard``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from report import write_section  # noqa: E402

import torch  # noqa: E402

import nodes.wire.auth  # noqa: E402
from nodes.wire import Connection, LinkShape, MessageType, connect, serve  # noqa: E402
from nodes.wire.guard import CHUNK_BYTES  # noqa: E402

SECRET = b"benchmark-secret-0123456789abcdef"
TARGET_GBPS = 2.0
TARGET_FRACTION = 0.8
SHAPED_MBIT = (1000, 10000)
"""Emulated links the protected and unprotected paths are compared on: the paper's 1 Gbit/s, and 10 Gbit/s."""
TITLE = "DHP transport throughput, unprotected and protected"


def _numel(mb: float) -> int:
    return int(mb * 1e6) // 4


# ---- receivers: each runs in its own process, reports its port on `ready`, serves one sender, then
# reports the CPU seconds it spent on the messages after the `warmup` first ones.


def _raw_receiver(ready, numel: int, messages: int, warmup: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ready.put(listener.getsockname()[1])
        sock, _ = listener.accept()
        with sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = memoryview(bytearray(numel * 4))
            for i in range(messages):
                if i == warmup:
                    cpu = time.process_time()
                got = 0
                while got < len(buf):
                    count = sock.recv_into(buf[got:])
                    if count == 0:
                        return
                    got += count
                sock.sendall(b"k")
            ready.put(time.process_time() - cpu)


def _streams_receiver(ready, numel: int, messages: int, warmup: int) -> None:
    async def main() -> None:
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for i in range(messages):
                if i == warmup:
                    cpu = time.process_time()
                await reader.readexactly(numel * 4)
                writer.write(b"k")
                await writer.drain()
            ready.put(time.process_time() - cpu)
            writer.close()
            done.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        ready.put(server.sockets[0].getsockname()[1])
        await done.wait()
        server.close()

    asyncio.run(main())


async def _litesrl_serve(conn: Connection, ready, messages: int, warmup: int) -> None:
    """The agent's receive loop: a new tensor per message (no ``into=``), a small answer to each."""
    for i in range(messages):
        if i == warmup:
            cpu = time.process_time()
        message = await conn.recv()
        await conn.send(MessageType.PONG, {"step": message.header["step"]})
    ready.put(time.process_time() - cpu)


def _litesrl_receiver(ready, numel: int, messages: int, warmup: int, protect: str = "integrity") -> None:
    torch.set_num_threads(1)

    async def main() -> None:
        done = asyncio.Event()

        async def handle(conn: Connection) -> None:
            await _litesrl_serve(conn, ready, messages, warmup)
            done.set()

        server = await serve("127.0.0.1", 0, handle, SECRET, protect=protect)
        ready.put(server.address[1])
        await done.wait()
        await server.close()

    asyncio.run(main())


def _encrypted_receiver(ready, numel: int, messages: int, warmup: int) -> None:
    _litesrl_receiver(ready, numel, messages, warmup, protect="encrypt")


@contextlib.contextmanager
def _stdlib_only() -> Iterator[None]:
    """Make this process negotiate as a board without ``cryptography`` does (HMAC-SHA256 only) while inside.

    Undone on exit: the sender runs every method in this one process, and a patch left in place made the
    later Poly1305 and emulated-link rows negotiate HMAC-SHA256 too (it did until 2026-12-01).
    """
    negotiable = nodes.wire.auth.available_macs
    nodes.wire.auth.available_macs = lambda: ("hmac-sha256",)
    try:
        yield
    finally:
        nodes.wire.auth.available_macs = negotiable


def _hmac_receiver(ready, numel: int, messages: int, warmup: int) -> None:
    with _stdlib_only():
        _litesrl_receiver(ready, numel, messages, warmup)


def _unprotected_receiver(ready, numel: int, messages: int, warmup: int) -> None:
    torch.set_num_threads(1)

    async def main() -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.setblocking(False)
            ready.put(listener.getsockname()[1])
            sock, _ = await asyncio.get_running_loop().sock_accept(listener)
            async with Connection(sock) as conn:
                await _litesrl_serve(conn, ready, messages, warmup)

    asyncio.run(main())


def _gloo_receiver(ready, numel: int, messages: int, warmup: int) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    port = ready.get()  # the sender chose the rendezvous port
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=1, world_size=2)
    buf, ack = torch.empty(numel), torch.ones(1)
    for i in range(messages):
        if i == warmup:
            cpu = time.process_time()
        dist.recv(buf, src=0)
        dist.send(ack, dst=0)
    ready.put(time.process_time() - cpu)
    dist.destroy_process_group()


# ---- senders: each returns (wall seconds, CPU seconds) taken by `messages` tensors after `warmup` untimed ones.


def _raw_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int) -> tuple[float, float]:
    view = memoryview(tensor.numpy()).cast("B")
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ack = bytearray(1)
        for i in range(messages):
            if i == warmup:
                start, cpu = time.perf_counter(), time.process_time()
            sock.sendall(view)
            sock.recv_into(ack)
        return time.perf_counter() - start, time.process_time() - cpu


def _streams_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int) -> tuple[float, float]:
    view = memoryview(tensor.numpy()).cast("B")

    async def main() -> tuple[float, float]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(messages):
            if i == warmup:
                start, cpu = time.perf_counter(), time.process_time()
            writer.write(view)
            await writer.drain()
            await reader.readexactly(1)
        elapsed = time.perf_counter() - start, time.process_time() - cpu
        writer.close()
        return elapsed

    return asyncio.run(main())


def _litesrl_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int, shaping: LinkShape | None = None,
                    protect: str | None = "integrity") -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        if protect is None:
            conn = Connection(socket.create_connection(("127.0.0.1", port)), shaping=shaping)
        else:
            conn = await connect("127.0.0.1", port, SECRET, shaping=shaping, protect=protect)
            wanted = nodes.wire.auth.available_macs()[0]  # both ends share this process's code and patches
            if protect == "integrity" and conn.mac != wanted:
                raise SystemExit(f"negotiated {conn.mac}, expected {wanted}: the rows would be mislabelled")
        for i in range(messages):
            if i == warmup:
                start, cpu = time.perf_counter(), time.process_time()
            await conn.send(MessageType.FORWARD, {"step": i}, [tensor])
            await conn.recv()
        elapsed = time.perf_counter() - start, time.process_time() - cpu
        conn.close()
        return elapsed

    return asyncio.run(main())


def _unprotected_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int) -> tuple[float, float]:
    return _litesrl_sender(port, tensor, messages, warmup, protect=None)


def _hmac_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int) -> tuple[float, float]:
    with _stdlib_only():
        return _litesrl_sender(port, tensor, messages, warmup)


def _encrypted_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int) -> tuple[float, float]:
    return _litesrl_sender(port, tensor, messages, warmup, protect="encrypt")


def primitive_speeds(seconds: float = 0.5) -> list[tuple[str, float]]:
    """GB/s of one core for each candidate per-frame primitive, over 4 MiB chunks (the transport's unit)."""
    import hashlib
    import hmac

    key, chunk = os.urandom(32), memoryview(os.urandom(CHUNK_BYTES))

    def rate(work: Callable[[], None]) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            work()
            done += len(chunk)
        return done / (time.perf_counter() - start) / 1e9

    results = [
        ("HMAC-SHA256 (hashlib, stdlib)", rate(lambda: hmac.new(key, chunk, hashlib.sha256).digest())),
        ("BLAKE2b keyed (hashlib, stdlib)", rate(lambda: hashlib.blake2b(chunk, key=key, digest_size=16).digest())),
    ]
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
        from cryptography.hazmat.primitives.poly1305 import Poly1305
    except ImportError:
        return results
    chacha, gcm, nonce = ChaCha20Poly1305(key), AESGCM(key), bytes(12)
    results += [
        ("Poly1305 (cryptography; one-time key per frame)", rate(lambda: Poly1305.generate_tag(key, chunk))),
        ("ChaCha20-Poly1305 encrypt (cryptography)", rate(lambda: chacha.encrypt(nonce, chunk, None))),
        ("AES-256-GCM encrypt (cryptography)", rate(lambda: gcm.encrypt(nonce, chunk, None))),
    ]
    return results


def _gloo_sender(port: int, tensor: torch.Tensor, messages: int, warmup: int) -> tuple[float, float]:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=2)
    ack = torch.empty(1)
    for i in range(messages):
        if i == warmup:
            start, cpu = time.perf_counter(), time.process_time()
        dist.send(tensor, dst=1)
        dist.recv(ack, src=1)
    elapsed = time.perf_counter() - start, time.process_time() - cpu
    dist.destroy_process_group()
    return elapsed


def pin(pid: int, core: int) -> None:
    """Keep a process on one core (sender on core 0, receiver on core 1), as two boards each have their own CPU:
    left to the scheduler, the pair sometimes shares a core and the same code runs at half its speed."""
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > core:
        os.sched_setaffinity(pid, {core})


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Trial:
    """One method's run: wall seconds per message, and CPU seconds per message on each side."""

    wall: float
    cpu_send: float
    cpu_recv: float


def run_method(receiver: Callable, sender: Callable, tensor: torch.Tensor, messages: int, warmup: int, **kw) -> Trial:
    """One receiver process and the sender in this process; figures per timed message."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    child = ctx.Process(target=receiver, args=(ready, tensor.numel(), messages + warmup, warmup))
    child.start()
    pin(child.pid, 1)
    if receiver is _gloo_receiver:
        port = _free_port()  # gloo's rendezvous port is chosen here and handed to the receiver
        ready.put(port)
    else:
        port = ready.get(timeout=60)
    try:
        wall, cpu_send = sender(port, tensor, messages + warmup, warmup, **kw)
        cpu_recv = ready.get(timeout=60)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    return Trial(wall / messages, cpu_send / messages, cpu_recv / messages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=12.8, help="tensor size in megabytes (1e6 bytes)")
    parser.add_argument("--messages", type=int, default=40, help="timed messages per trial")
    parser.add_argument("--trials", type=int, default=5, help="trials per method; the median is reported")
    parser.add_argument("--shaped-messages", type=int, default=30,
                        help="timed messages per trial on each emulated link (after 3 untimed ones)")
    parser.add_argument("--no-gloo", action="store_true", help="skip torch.distributed gloo")
    parser.add_argument("--no-record", action="store_true", help="do not append to BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pin(0, 0)
    tensor = torch.randn(_numel(args.mb))
    nbytes = tensor.numel() * 4
    methods = [
        ("raw blocking socket (sendall / recv_into)", _raw_receiver, _raw_sender),
        ("asyncio streams (write+drain / readexactly)", _streams_receiver, _streams_sender),
        ("litesrl Connection, unprotected (send / recv)", _unprotected_receiver, _unprotected_sender),
        ("litesrl Connection, integrity, Poly1305 (negotiated)", _litesrl_receiver, _litesrl_sender),
        ("litesrl Connection, integrity, HMAC-SHA256 (stdlib only)", _hmac_receiver, _hmac_sender),
        ("litesrl Connection, encrypted ChaCha20-Poly1305", _encrypted_receiver, _encrypted_sender),
    ]
    if not args.no_gloo:
        methods.append(("torch.distributed gloo (send / recv)", _gloo_receiver, _gloo_sender))
    # Trials go round the methods in turn, so a burst of load from elsewhere on the machine hits them alike.
    trials: dict[str, list[Trial]] = {name: [] for name, _, _ in methods}
    for number in range(1, args.trials + 1):
        for name, receiver, sender in methods:
            trial = run_method(receiver, sender, tensor, args.messages, warmup=3)
            trials[name].append(trial)
            print(f"trial {number}: {name:46s} {nbytes / trial.wall / 1e9:6.2f} GB/s", flush=True)
    links = [(mbit, LinkShape.from_mbit(mbit, latency_ms=1.0)) for mbit in SHAPED_MBIT]
    shaped = {(mbit, protect): statistics.median(
        run_method(_unprotected_receiver if protect is None else _litesrl_receiver, _litesrl_sender, tensor,
                   args.shaped_messages, warmup=3, shaping=shape, protect=protect).wall for _ in range(args.trials))
        for mbit, shape in links for protect in (None, "integrity")}

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(t, field) for t in trials[name])

    raw_gbps = nbytes / median(methods[0][0], "wall") / 1e9
    lines = [
        f"| method | GB/s | ms per {args.mb:g} MB | % of raw socket | CPU ms/msg sender | CPU ms/msg receiver |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, _, _ in methods:
        wall = median(name, "wall")
        gbps = nbytes / wall / 1e9
        lines.append(
            f"| {name} | {gbps:.2f} | {wall * 1e3:.2f} | {100 * gbps / raw_gbps:.0f} % "
            f"| {median(name, 'cpu_send') * 1e3:.2f} | {median(name, 'cpu_recv') * 1e3:.2f} |"
        )
    lines += ["", f"| emulated link (1 ms latency) | unprotected ms per {args.mb:g} MB | integrity ms | wire time ms "
              "| integrity / unprotected throughput |", "|---|---:|---:|---:|---:|"]
    for mbit, shape in links:
        plain_ms, guarded_ms = shaped[mbit, None] * 1e3, shaped[mbit, "integrity"] * 1e3
        lines.append(f"| {mbit / 1000:g} Gbit/s | {plain_ms:.1f} | {guarded_ms:.1f} | "
                     f"{shape.transfer_time(nbytes) * 1e3:.1f} | {100 * plain_ms / guarded_ms:.0f} % |")
    primitives = primitive_speeds()
    lines += ["", "| primitive, one core, 4 MiB chunks | GB/s |", "|---|---:|"]
    lines += [f"| {name} | {gbps:.2f} |" for name, gbps in primitives]
    plain_wall = median(methods[2][0], "wall")
    plain = nbytes / plain_wall / 1e9
    ours = nbytes / median(methods[3][0], "wall") / 1e9
    stdlib = nbytes / median(methods[4][0], "wall") / 1e9
    poly = dict(primitives).get("Poly1305 (cryptography; one-time key per frame)")
    on_links = [100 * shaped[m, None] / shaped[m, "integrity"] for m in SHAPED_MBIT]
    notes = [
        f"Target: integrity on >= {TARGET_FRACTION:.0%} of the unprotected transport. On the emulated links "
        + ", ".join(f"{m / 1000:g} Gbit/s: {share:.0f} %" for m, share in zip(SHAPED_MBIT, on_links))
        + f" ({'met' if min(on_links) >= 100 * TARGET_FRACTION else 'NOT met'}). On bare loopback "
        f"{'met' if ours >= TARGET_FRACTION * plain else 'NOT met'}: {ours:.2f} against {plain:.2f} GB/s, "
        f"{100 * ours / plain:.0f} % ({100 * ours / raw_gbps:.0f} % of raw); HMAC-SHA256 alone (a board without "
        f"cryptography): {100 * stdlib / plain:.0f} %.",
    ]
    if poly:
        serial = plain_wall + 2 * nbytes / (poly * 1e9)
        notes.append(
            f"Why loopback is different: there the unprotected sender and receiver each spend about a core on the "
            f"copies ({median(methods[2][0], 'cpu_send') * 1e3:.1f} and {median(methods[2][0], 'cpu_recv') * 1e3:.1f} "
            f"CPU ms of a {plain_wall * 1e3:.1f} ms message), so the MAC, which needs the same core on each end "
            f"(Poly1305 runs under the GIL), adds its time to the message: {plain_wall * 1e3:.1f} + 2 x "
            f"{nbytes / (poly * 1e9) * 1e3:.1f} ms = {serial * 1e3:.1f} ms, a ceiling of {100 * plain_wall / serial:.0f} % "
            f"for any MAC of this speed. On a link slower than the CPU's copies (every Jetson link: 1 Gbit/s Ethernet "
            f"is 0.125 GB/s) the MAC runs while the wire drains, as the emulated rows show."
        )
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    notes.append(f"Machine load average {load} at the end of the run.")
    table = "\n".join(lines)
    print()
    print(table)
    print("\n".join(notes))
    if not args.no_record:
        body = (f"- loopback, float32 tensor of {args.mb:g} MB, {args.messages} timed messages each acknowledged "
                f"({args.shaped_messages} on the emulated links), median of {args.trials} trials, receiver in a "
                f"separate process; the litesrl rows are the agents' own path (`Connection.send` / "
                f"`Connection.recv`, a fresh tensor per message); integrity rows ran the real handshake; 3 untimed "
                f"messages first on every connection (a new connection's first receive buffers fault in every page "
                f"until the allocator reuses freed ones)\n\n"
                f"{table}\n\n" + "\n\n".join(notes))
        write_section(TITLE, "transport.py", body)


if __name__ == "__main__":
    main()
