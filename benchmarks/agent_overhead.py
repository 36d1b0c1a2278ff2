"""The node agent's runtime memory: what an idle agent holds before any stage, as it reports it to the coordinator.

One command: ``python benchmarks/agent_overhead.py``. Starts the real agent (``python -m
nodes.agent_main``) on loopback, attaches as the coordinator does and reads the ``runtime_bytes`` it
reports (its resident memory: CWB plans each board's budget minus this), beside the resident memory of
a bare interpreter and of one that only imported torch, to show where it goes. On a Jetson, run it with
JetPack's Python; a GPU adds the CUDA context once the first stage runs.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
from pathlib import Path

from report import write_section

from engine.dhp.protocol import Op  # noqa: E402
from nodes.client import connect_node  # noqa: E402
from nodes.telemetry.process import resident_bytes  # noqa: E402
from nodes.wire.auth import write_secret  # noqa: E402

RSS = "from nodes.telemetry.process import resident_bytes; print(resident_bytes())"


def interpreter_rss(imports: str) -> int:
    """Resident bytes of a fresh interpreter after ``imports``."""
    out = subprocess.run([sys.executable, "-c", f"{imports}\n{RSS}"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


async def agent_report(folder: Path) -> tuple[int, int]:
    """(runtime_bytes the agent reports on ATTACH, its resident memory read from /proc)."""
    secret = folder / "cluster.secret"
    write_secret(secret)
    agent = subprocess.Popen([sys.executable, "-m", "nodes.agent_main", "--host", "127.0.0.1", "--port", "0",
                              "--secret-file", str(secret), "--name", "bench", "--memory-budget", "3GB",
                              "--device", "cpu"], stdout=subprocess.PIPE, text=True)
    try:
        line = agent.stdout.readline()  # "listening on 127.0.0.1:PORT"
        port = int(line.rsplit(":", 1)[1])
        link = await connect_node("bench", "127.0.0.1", port, secret.read_text().strip().encode(), 30)
        await link.send(Op.ATTACH, {"req": 1, "run": "bench"})
        attached = await link.recv(timeout=60)
        link.close()
        return int(attached.header["runtime_bytes"]), resident_bytes(agent.pid) or 0
    finally:
        agent.terminate()
        agent.wait(timeout=30)


def main() -> None:
    import os

    load = os.getloadavg()[0]
    bare = interpreter_rss("")
    torch_only = interpreter_rss("import torch")
    agent_modules = interpreter_rss("import nodes.agent")
    with tempfile.TemporaryDirectory() as tmp:
        reported, measured = asyncio.run(agent_report(Path(tmp)))
    mb = lambda n: f"{n / 2**20:.0f} MB"  # noqa: E731
    body = "\n".join([
        f"- load average before the run (1 min): {load:.2f}",
        "",
        "| process | resident memory |",
        "|---|---:|",
        f"| bare Python | {mb(bare)} |",
        f"| Python after `import torch` | {mb(torch_only)} |",
        f"| Python after `import nodes.agent` (torch, torchvision, engine) | {mb(agent_modules)} |",
        f"| idle agent, `runtime_bytes` it reports on ATTACH | {mb(reported)} |",
        f"| idle agent, read from /proc at the same time | {mb(measured)} |",
        "",
        "The agent's extra over torch is torchvision, whose package import pulls torchvision.ops and with it "
        "torch._dynamo and sympy; engine's model and augmentations need torchvision, so it stays.",
    ])
    write_section("Node agent runtime memory", "agent_overhead.py", body)
    print(body)


if __name__ == "__main__":
    main()
