"""Faults during a DHP run: a node lost mid-chain, a node that cannot reach a peer, and a node rejoining.

* **Lost** (its link closed, e.g. SIGKILL; or silent past the heartbeat timeout): the chain it held
  is aborted, the chain's other members drop it (ABORT) and its mini-batch is handed out again
  before any new one, so no batch is lost or counted twice. Dynamic chains carry on with the
  remaining nodes; a fixed chain cannot re-route, so fixed mode stops with the scheduler's report.
* **Failed**: a node that cannot deliver to a peer names it; the peer is declared lost (it is dead
  or cut off from the chain either way). A node whose own step failed is declared lost.
* **Stalled**: a chain not heard of for ``chain_timeout`` s (a message lost on the way, a step that
  never ends) is given up like an aborted chain: its members drop it and its batch is handed out
  again; the nodes stay in the pool (heartbeats catch a node that is really gone).
* **Rejoin** (dynamic mode): a lost node is redialled every ``rejoin_interval`` s; once its agent
  answers (restarted), it is assigned its old stage with the weights and SGD momentum of a live
  replica of that stage, and joins the pool.

A known gap: a node killed after delivering its gradient but before its BACKWARD_DONE reached the
coordinator has its chain aborted although the earlier stages could finish it; they then also
train that mini-batch once more when it is requeued. The iteration is still counted exactly once.
With overlap a node reports BACKWARD_DONE while its gradient is still on the wire, so a lost node
also takes down the chains whose gradient it may not have delivered (its predecessor still waits).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from engine.dhp.assign import assign, assign_header
from engine.dhp.events import ChainAborted, NodeJoined, NodeLost, NodeState
from engine.dhp.protocol import LinkError, Message, Op
from engine.dhp.stage import split_momentum
from engine.dhp.sync import fetch_state
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.dhp.coordinator import Coordinator

log = logging.getLogger(__name__)


class FaultHandler:
    """Fault handling of one :class:`engine.dhp.coordinator.Coordinator` run: it acts on the run's scheduler,
    channels and events, which the coordinator owns."""

    def __init__(self, run: Coordinator) -> None:
        self.run = run

    async def node_lost(self, node: str, reason: str) -> None:
        if node not in {n for nodes in self.run._sched.stages for n in nodes}:
            return  # an idle node, or already handled
        self.run.channels[node].mark_lost(reason)
        loss = self.run._sched.node_lost(node)
        self.run._emit(NodeState, node=node, stage=self.run._stage_of[node], state="lost")
        for aborted in loss.aborted:
            self.run._flight.pop(aborted.chain, None)
            for member in aborted.nodes:
                if member in loss.freed:
                    await self.run.channels[member].send(Op.ABORT, {"chain": aborted.chain})
                    self.run._emit(NodeState, node=member, stage=self.run._stage_of[member], state="idle")
        self.run._emit(NodeLost, node=node, reason=reason, requeued=loss.requeued)
        log.warning("node %s lost (%s); requeued %s", node, reason, list(loss.requeued) or "nothing")
        for hop in loss.hops:
            await self.run._hop(hop)
        if self.run.settings.overlap and loss.fatal is None:
            for chain in self.gradients_from(node):
                await self.give_up(chain, f"{node} was lost with its gradient on the way")
        if loss.fatal is None and self.run.settings.mode == "dynamic" and self.run._reconnect is not None:
            self.run._rejoins[node] = asyncio.get_running_loop().create_task(self.rejoin(node, self.run._stage_of[node]))

    async def failed(self, node: str, message: Message) -> None:
        chain, peer = message.header.get("chain"), message.header.get("peer")
        reason = str(message.header.get("reason", "no reason given"))
        if chain not in self.run._flight:
            log.info("%s: stale failure of chain %s: %s", node, chain, reason)
        elif isinstance(peer, str) and peer in self.run.channels:
            await self.node_lost(peer, f"unreachable from {node}: {reason}")
        else:
            await self.node_lost(node, f"chain {chain} failed there: {reason}")

    async def node_joined(self, node: str, stage: int) -> None:
        for hop in self.run._sched.node_joined(node, stage):
            await self.run._hop(hop)
        self.run._emit(NodeJoined, node=node, stage=stage)
        self.run._emit(NodeState, node=node, stage=stage, state="idle")
        log.info("node %s rejoined stage %d", node, stage + 1)

    async def rejoin(self, node: str, stage: int) -> None:
        """Redial ``node`` until its agent answers, give it ``stage`` with a live replica's weights, queue the join."""
        s, reconnect = self.run.settings, self.run._reconnect
        if reconnect is None:
            return
        while True:
            await asyncio.sleep(s.rejoin_interval)
            try:
                link = await reconnect(node)
            except LinkError as exc:
                log.debug("rejoin %s: %s", node, exc)
                continue
            channel = self.run._channel(link)
            try:
                await channel.attach(self.run.run_id, s.request_timeout)
                donors = [n for n in self.run._sched.stages[stage] if not self.run.channels[n].lost]
                if not donors:
                    raise EngineError(f"stage {stage + 1} has no live replica to copy")
                state = await fetch_state(self.run.channels[donors[0]], s.request_timeout, momentum=True)
                header = assign_header(s, self.run.plan, self.run.profile, stage, node, self.run.addresses)
                data = await assign(channel, header, state, s.assign_timeout)
                known = self.run._dataset
                if data is not None and (data["images"], data["mean"]) != (known["images"], known["mean"]):
                    raise EngineError(f"{node} now reads a different dataset ({data['images']} images)")
            except EngineError as exc:  # LinkError included: the node went again, or is not ready yet
                log.warning("rejoin of %s failed: %s", node, exc)
                await channel.close()
                continue
            except asyncio.CancelledError:  # the run ended meanwhile
                await channel.close()
                raise
            old = self.run.channels[node]
            self.run.channels[node] = channel
            await old.close()
            channel.start_heartbeat(s.heartbeat_interval, s.heartbeat_timeout)
            self.run._rejoins.pop(node, None)
            self.run.rejoined_from[node] = split_momentum(state)[0]
            self.run._queue.put_nowait(("joined", node, stage))
            return

    def chain_limit(self) -> float:
        """Seconds a chain may go unheard of: ``chain_timeout``, or 5x the slowest node's usual hold on slow
        hardware, so that a long step is never taken for a stall (0: never give up)."""
        s = self.run.settings
        if not s.chain_timeout:
            return 0.0
        holds = [self.run._sched.mean_hold_ms(node) or 0.0 for node in self.run._stage_of]
        return max(s.chain_timeout, 5 * max(holds, default=0.0) / 1000)

    async def abort_stalled(self) -> None:
        """Give up the chains not heard of for ``_chain_limit()`` s (waiting for a free node does not count)."""
        limit, now = self.chain_limit(), time.monotonic()
        for chain, flight in list(self.run._flight.items()):
            if not limit or now - flight.progress < limit:
                continue
            if self.run._sched.is_waiting(chain):
                flight.progress = now  # it waits its turn; its clock restarts when a node takes it
                continue
            nodes = ", ".join(self.run._sched.chain_info(chain).nodes)
            await self.give_up(chain, f"no report for {limit:.3g} s (chain reached {nodes})")

    def gradients_from(self, node: str) -> list[int]:
        """Chains whose member before ``node`` still waits for the gradient ``node`` reported sending."""
        busy, chains = self.run._sched.busy, []
        for chain in self.run._flight:
            members = self.run._sched.chain_info(chain).nodes
            at = members.index(node) if node in members else 0
            if at > 0 and busy.get(node) != chain and busy.get(members[at - 1]) == chain:
                chains.append(chain)
        return chains

    async def give_up(self, chain: int, reason: str) -> None:
        """Abort ``chain``: its members drop it, its batch is handed out again (ChainAborted)."""
        aborted = self.run._sched.abort(chain)
        del self.run._flight[chain]
        record = aborted.chain
        log.warning("chain %d (batch %d) given up: %s; its batch is handed out again", chain, record.batch, reason)
        for member in aborted.freed:
            await self.run.channels[member].send(Op.ABORT, {"chain": chain})
            self.run._emit(NodeState, node=member, stage=self.run._stage_of[member], state="idle")
        self.run._emit(ChainAborted, chain=chain, batch=record.batch, nodes=record.nodes, reason=reason)
        for hop in aborted.hops:
            await self.run._hop(hop)
