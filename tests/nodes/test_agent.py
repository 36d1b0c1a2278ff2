"""The node agent as a real process on loopback: attach, assignment and its memory budget, a chain, telemetry,
robustness against malformed peers, and clean shutdown (SIGTERM, SHUTDOWN)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

import pytest
import torch

from assets import asset_path
from engine.cwb.profile_format import load_profile
from engine.dhp.batches import DataSettings, StageOneData
from engine.dhp.checkpoints import stage_states
from engine.dhp.emulation import stage_memory
from engine.dhp.protocol import LinkError, Op, pack_state, unpack_state
from engine.dhp.stage import StageSpec, StageWorker
from engine.model import ModelConfig, build_model
from engine.optim import OptimConfig
from nodes.client import connect_node
from nodes.wire import connect
from tests.nodes.agent_procs import SECRET, gone, log_text, make_data, start_agents

pytestmark = pytest.mark.slow

MODEL = ModelConfig()
OPTIM = OptimConfig(batch_size=4, total_steps=10, warmup_steps=2)
UNITS = len(build_model(MODEL).partitionable_layers())


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def agents(tmp_path_factory, data):
    """Three agents with a 1 GB budget: one to talk to, one for SIGTERM, one for SHUTDOWN."""
    started = start_agents(tmp_path_factory.mktemp("agents"), ["solo", "term", "quit"], memory="1GB", data=data)
    yield {agent.name: agent for agent in started}
    for agent in started:
        agent.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


async def _link(agent):
    link = await connect_node(agent.name, agent.host, agent.port, SECRET)
    await link.send(Op.ATTACH, {"req": 1, "run": "test"})
    attached = await link.recv(timeout=10)
    assert attached.op is Op.ATTACHED
    return link, attached


def _assign(start: int, end: int, index: int, count: int, state: dict, memory=None, data=None) -> tuple[dict, list]:
    keys, tensors = pack_state(state)
    header = {"req": 2, "stage": {"index": index, "count": count, "spec": StageSpec(MODEL, start, end).to_dict()},
              "optim": OPTIM.to_dict(), "seed": 0, "memory": memory, "emulation": None, "data": data,
              "address": {"host": "127.0.0.1", "port": 1}, "peers": {}, "keys": keys}
    return header, tensors


def _whole_state(seed: int = 0) -> dict:
    """The whole model as one stage (keys of ``stage_module``), seeded."""
    return stage_states(MODEL, [], None, seed)[0]


async def test_attach_describes_the_node(agents, data):
    link, attached = await _link(agents["solo"])
    link.close()
    assert attached.header["name"] == "solo"
    assert attached.header["memory_budget"] == 1_000_000_000
    assert attached.header["emulated"] is None
    assert attached.header["data"] == str(data)
    assert attached.header["pid"] == agents["solo"].pid


async def test_an_assignment_over_the_memory_budget_is_refused_with_the_numbers(agents):
    profile = load_profile(asset_path("profiles/tx2-resnet18.json"))
    memory = stage_memory(profile, 0, 6)  # stage 1 of the paper's cut: about 2.24 GB
    link, _ = await _link(agents["solo"])
    header, tensors = _assign(0, 6, 0, 3, {}, memory=vars(memory))
    await link.send(Op.ASSIGN, header, tensors)
    answer = await link.recv(timeout=30)
    link.close()
    assert answer.op is Op.REFUSED
    assert answer.header["need"] == memory.total and answer.header["budget"] == 1_000_000_000
    reason = answer.header["reason"]
    assert reason.startswith("solo: stage 1 (units 0..5) needs 2.24 GB (weights ")
    assert reason.endswith("but the memory budget is 1.00 GB")


async def test_a_single_stage_chain_trains_exactly_like_a_local_worker(agents, data):
    settings = DataSettings(path=None, load_size=32, view_size=32, batch_size=4, seed=5)
    link, _ = await _link(agents["solo"])
    header, tensors = _assign(0, UNITS, 0, 1, _whole_state(), data=settings.to_dict())
    await link.send(Op.ASSIGN, header, tensors)
    assigned = await link.recv(timeout=60)
    assert assigned.op is Op.ASSIGNED, assigned.header
    assert assigned.header["data"]["images"] == 20 and assigned.header["data"]["batches_per_epoch"] == 5

    await link.send(Op.START, {"chain": 7, "batch": 3, "iteration": 0})
    done = await link.recv(timeout=60)
    assert done.op is Op.BACKWARD_DONE and done.header["chain"] == 7
    await link.send(Op.GET_PARAMS, {"req": 3})
    params = await link.recv(timeout=30)
    link.close()

    worker = StageWorker(StageSpec(MODEL, 0, UNITS), OPTIM, _whole_state())
    views = StageOneData(settings, data).views(3)
    loss = float(worker.forward(0, views))
    worker.backward(0, None, 0)
    assert done.header["loss"] == pytest.approx(loss, abs=1e-6)
    remote = unpack_state(params.header, params.tensors)
    for key, value in worker.state_dict().items():
        torch.testing.assert_close(remote[key], value, rtol=1e-5, atol=1e-6, msg=key)


async def test_telemetry_on_request(agents):
    link, _ = await _link(agents["solo"])
    await link.send(Op.TELEMETRY, {"req": 4})
    answer = await link.recv(timeout=30)
    link.close()
    assert answer.op is Op.SAMPLE and answer.header["node"] == "solo"
    assert answer.header["source"] in ("psutil", "tegrastats", "jtop")
    assert answer.header["sample"]["ram"]["total_mb"] > 0


async def test_telemetry_pushed_periodically_until_stopped(agents):
    link, _ = await _link(agents["solo"])
    await link.send(Op.TELEMETRY, {"every": 0.2})
    samples = [await link.recv(timeout=30) for _ in range(3)]
    assert all(s.op is Op.SAMPLE and s.header["req"] is None for s in samples)
    await link.send(Op.TELEMETRY, {"every": 0})
    await link.send(Op.PING, {"n": 2})
    while (answer := await link.recv(timeout=10)).op is Op.SAMPLE:  # samples already on the way
        pass
    assert answer.op is Op.PONG
    with pytest.raises(LinkError):  # nothing more comes
        await link.recv(timeout=0.8)
    link.close()


async def test_the_agent_survives_malformed_peers(agents):
    solo = agents["solo"]
    loop = asyncio.get_running_loop()
    # Bytes that are no frame at all, before any handshake.
    reader, writer = await asyncio.open_connection(solo.host, solo.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: node\r\n\r\n")
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) is not None
    writer.close()
    # A peer with the wrong secret.
    with pytest.raises(Exception, match="prove|refused"):
        await connect(solo.host, solo.port, b"not-the-cluster-secret-at-all!!", 5.0)
    # Authenticated peers that send nonsense: a control op without ATTACH, and an activation with a bad header.
    for op, header in ((Op.ASSIGN, {"req": 1}), (Op.ACTIVATION, {"chain": "seven"}), (Op.GRADIENT, {"chain": 1})):
        link = await connect_node(solo.name, solo.host, solo.port, SECRET)
        await link.send(op, header)
        with pytest.raises(LinkError):
            while True:  # the agent may answer with an ERROR frame before closing
                await link.recv(timeout=10)
        link.close()
    # The agent still serves an honest coordinator.
    link, attached = await _link(solo)
    await link.send(Op.PING, {"n": 1})
    assert (await link.recv(timeout=10)).op is Op.PONG
    link.close()
    text = log_text(solo)
    assert "bad magic b'GET '" in text
    assert "needs an attached control connection" in text
    assert "'chain' must be int" in text
    assert "carries one tensor, got 0" in text
    assert loop.is_running()


async def test_sigterm_stops_the_agent_cleanly(agents):
    term = agents["term"]
    link, _ = await _link(term)
    term.process.send_signal(signal.SIGTERM)
    assert term.process.wait(15) == 0
    link.close()
    assert "agent term stopped" in log_text(term)
    assert gone(term.pid)


async def test_a_shutdown_message_stops_the_agent(agents):
    quit_agent = agents["quit"]
    link, _ = await _link(quit_agent)
    await link.send(Op.SHUTDOWN, {})
    assert await asyncio.get_running_loop().run_in_executor(None, quit_agent.process.wait, 15) == 0
    link.close()
    assert "SHUTDOWN from the coordinator" in log_text(quit_agent)


def test_a_missing_secret_exits_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "nodes.agent_main", "--port", "0", "--secret-file", str(tmp_path / "none"), "--name", "x"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: no cluster secret: {tmp_path / 'none'} does not exist")
