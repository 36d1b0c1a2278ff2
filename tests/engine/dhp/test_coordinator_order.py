"""Reports travel on separate connections, so a node's BACKWARD_DONE may overtake the one of the later stage that
sent it the gradient; the coordinator must apply them in backward order and lose neither (a unit test with
scripted links: the real-process tests hit this race only now and then)."""

from __future__ import annotations

import asyncio

from engine.dhp.coordinator import Coordinator
from engine.dhp.protocol import LinkError, Message, Op
from tests.engine.dhp.coordinator_helpers import PROFILE, plan_for, settings

DATA = {"images": 20, "skipped": 0, "mean": [0.5] * 3, "std": [0.2] * 3, "batches_per_epoch": 5}


class ScriptedCluster:
    """Two scripted nodes, ``a`` (stage 1) and ``b`` (stage 2), that answer like agents but report a chain's
    backward in the wrong order: ``a`` (which got the gradient) before ``b`` (which sent it)."""

    def __init__(self) -> None:
        self.inbox = {"a": asyncio.Queue(), "b": asyncio.Queue()}

    def link(self, name: str) -> ScriptedLink:
        return ScriptedLink(name, self)


class ScriptedLink:
    def __init__(self, name: str, cluster: ScriptedCluster) -> None:
        self.name, self.cluster, self.closed = name, cluster, False

    async def send(self, op, header=None, tensors=()):
        header, post = dict(header or {}), self.cluster.inbox
        if op is Op.ATTACH:
            post[self.name].put_nowait(Message(Op.ATTACHED, {"req": header["req"], "name": self.name,
                                                             "memory_budget": 3 * 10**9, "emulated": None, "data": "d"}))
        elif op is Op.ASSIGN:
            data = DATA if header["stage"]["index"] == 0 else None
            post[self.name].put_nowait(Message(Op.ASSIGNED, {"req": header["req"], "data": data}))
        elif op is Op.PING:
            post[self.name].put_nowait(Message(Op.PONG, header))
        elif op is Op.START:
            post["a"].put_nowait(Message(Op.FORWARD_DONE, {"chain": header["chain"], "ms": 1.0}))
        elif op is Op.NEXT_HOP:  # b runs forward, loss and backward; a's report comes first
            done = {"timing": {"forward_ms": 1.0, "backward_ms": 1.0}}
            post["a"].put_nowait(Message(Op.BACKWARD_DONE, {"chain": header["chain"], **done}))
            await asyncio.sleep(0.01)
            post["b"].put_nowait(Message(Op.BACKWARD_DONE, {"chain": header["chain"], "loss": -0.5, **done}))

    async def recv(self, timeout=None):
        if self.closed:
            raise LinkError(f"{self.name}: closed")
        return await asyncio.wait_for(self.cluster.inbox[self.name].get(), timeout)

    def close(self):
        self.closed = True


async def test_an_overtaking_backward_report_waits_for_the_later_stage():
    cluster = ScriptedCluster()
    run = settings(6, None, mode="dynamic", average_every=0, stall_timeout=5.0)
    coordinator = Coordinator({n: cluster.link(n) for n in "ab"}, {"a": ("h", 1), "b": ("h", 2)}, run)
    await coordinator.attach()
    plan = plan_for(coordinator, "dynamic", partitions=2)
    assert plan.stages == (("a",), ("b",))
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    assert result.reason is None and result.step == 6
    assert result.per_node["a"].iterations == result.per_node["b"].iterations == 6
    assert result.final_loss == -0.5


class ScriptedFixedLink(ScriptedLink):
    """A fixed chain: ``a`` hands its activation to its successor ``b`` unasked, and ``b``'s BACKWARD_DONE reaches
    the coordinator before ``a``'s FORWARD_DONE that says where the activation went (held until ``a``'s own
    BACKWARD_DONE, which always comes after it, makes it due)."""

    async def send(self, op, header=None, tensors=()):
        if op is Op.ASSIGN:
            assert header["successor"] == ("b" if self.name == "a" else None)
        if op is not Op.START:
            assert op is not Op.NEXT_HOP, "a fixed chain's node needs no NEXT_HOP"
            return await super().send(op, header, tensors)
        post, chain = self.cluster.inbox, header["chain"]
        done = {"timing": {"forward_ms": 1.0, "backward_ms": 1.0}}
        post["b"].put_nowait(Message(Op.BACKWARD_DONE, {"chain": chain, "loss": -0.25, **done}))
        await asyncio.sleep(0.01)
        post["a"].put_nowait(Message(Op.FORWARD_DONE, {"chain": chain, "ms": 1.0, "to": "b"}))
        post["a"].put_nowait(Message(Op.BACKWARD_DONE, {"chain": chain, **done}))


async def test_a_fixed_successors_report_may_overtake_the_hand_off_report():
    cluster = ScriptedCluster()
    run = settings(6, None, mode="fixed", average_every=0, stall_timeout=5.0)
    coordinator = Coordinator({n: ScriptedFixedLink(n, cluster) for n in "ab"}, {"a": ("h", 1), "b": ("h", 2)}, run)
    await coordinator.attach()
    plan = plan_for(coordinator, "fixed", partitions=2)
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    assert result.reason is None and result.step == 6
    assert result.per_node["a"].iterations == result.per_node["b"].iterations == 6
    assert result.final_loss == -0.25
