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
from engine.dhp.sync import fetch_state
from engine.errors import EngineError

if TYPE_CHECKING:
    from engine.dhp.coordinator import Coordinator

log = logging.getLogger(__name__)


class Faults:
    """Fault handling of :class:`engine.dhp.coordinator.Coordinator` (a mixin: it shares the run's state)."""

    async def _node_lost(self: Coordinator, node: str, reason: str) -> None:
        if node not in {n for nodes in self._sched.stages for n in nodes}:
            return  # an idle node, or already handled
        self.channels[node].mark_lost(reason)
        loss = self._sched.node_lost(node)
        self._emit(NodeState, node=node, stage=self._stage_of[node], state="lost")
        for aborted in loss.aborted:
            self._flight.pop(aborted.chain, None)
            for member in aborted.nodes:
                if member in loss.freed:
                    await self.channels[member].send(Op.ABORT, {"chain": aborted.chain})
                    self._emit(NodeState, node=member, stage=self._stage_of[member], state="idle")
        self._emit(NodeLost, node=node, reason=reason, requeued=loss.requeued)
        log.warning("node %s lost (%s); requeued %s", node, reason, list(loss.requeued) or "nothing")
        for hop in loss.hops:
            await self._hop(hop)
        if self.settings.overlap and loss.fatal is None:
            for chain in self._gradients_from(node):
                await self._give_up(chain, f"{node} was lost with its gradient on the way")
        if loss.fatal is None and self.settings.mode == "dynamic" and self._reconnect is not None:
            self._rejoins[node] = asyncio.get_running_loop().create_task(self._rejoin(node, self._stage_of[node]))

    async def _failed(self: Coordinator, node: str, message: Message) -> None:
        chain, peer = message.header.get("chain"), message.header.get("peer")
        reason = str(message.header.get("reason", "no reason given"))
        if chain not in self._flight:
            log.info("%s: stale failure of chain %s: %s", node, chain, reason)
        elif isinstance(peer, str) and peer in self.channels:
            await self._node_lost(peer, f"unreachable from {node}: {reason}")
        else:
            await self._node_lost(node, f"chain {chain} failed there: {reason}")

    async def _node_joined(self: Coordinator, node: str, stage: int) -> None:
        for hop in self._sched.node_joined(node, stage):
            await self._hop(hop)
        self._emit(NodeJoined, node=node, stage=stage)
        self._emit(NodeState, node=node, stage=stage, state="idle")
        log.info("node %s rejoined stage %d", node, stage + 1)

    async def _rejoin(self: Coordinator, node: str, stage: int) -> None:
        """Redial ``node`` until its agent answers, give it ``stage`` with a live replica's weights, queue the join."""
        s = self.settings
        while True:
            await asyncio.sleep(s.rejoin_interval)
            try:
                link = await self._reconnect(node)
            except LinkError as exc:
                log.debug("rejoin %s: %s", node, exc)
                continue
            channel = self._channel(link)
            try:
                await channel.attach(self.run_id, s.request_timeout)
                donors = [n for n in self._sched.stages[stage] if not self.channels[n].lost]
                if not donors:
                    raise EngineError(f"stage {stage + 1} has no live replica to copy")
                state = await fetch_state(self.channels[donors[0]], s.request_timeout, momentum=True)
                header = assign_header(s, self.plan, self.profile, stage, node, self.addresses)
                data = await assign(channel, header, state, s.assign_timeout)
                if data is not None and (data["images"], data["mean"]) != (self._dataset["images"], self._dataset["mean"]):
                    raise EngineError(f"{node} now reads a different dataset ({data['images']} images)")
            except EngineError as exc:  # LinkError included: the node went again, or is not ready yet
                log.warning("rejoin of %s failed: %s", node, exc)
                await channel.close()
                continue
            except asyncio.CancelledError:  # the run ended meanwhile
                await channel.close()
                raise
            old = self.channels[node]
            self.channels[node] = channel
            await old.close()
            channel.start_heartbeat(s.heartbeat_interval, s.heartbeat_timeout)
            self._rejoins.pop(node, None)
            self._queue.put_nowait(("joined", node, stage))
            return

    def _chain_limit(self: Coordinator) -> float:
        """Seconds a chain may go unheard of: ``chain_timeout``, or 5x the slowest node's usual hold on slow
        hardware, so that a long step is never taken for a stall (0: never give up)."""
        s = self.settings
        if not s.chain_timeout:
            return 0.0
        holds = [self._sched.mean_hold_ms(node) or 0.0 for node in self._stage_of]
        return max(s.chain_timeout, 5 * max(holds, default=0.0) / 1000)

    async def _abort_stalled(self: Coordinator) -> None:
        """Give up the chains not heard of for ``_chain_limit()`` s (waiting for a free node does not count)."""
        limit, now = self._chain_limit(), time.monotonic()
        for chain, flight in list(self._flight.items()):
            if not limit or now - flight.progress < limit:
                continue
            if self._sched.is_waiting(chain):
                flight.progress = now  # it waits its turn; its clock restarts when a node takes it
                continue
            nodes = ", ".join(self._sched.chain_info(chain).nodes)
            await self._give_up(chain, f"no report for {limit:.3g} s (chain reached {nodes})")

    def _gradients_from(self: Coordinator, node: str) -> list[int]:
        """Chains whose member before ``node`` still waits for the gradient ``node`` reported sending."""
        busy, chains = self._sched.busy, []
        for chain in self._flight:
            members = self._sched.chain_info(chain).nodes
            at = members.index(node) if node in members else 0
            if at > 0 and busy.get(node) != chain and busy.get(members[at - 1]) == chain:
                chains.append(chain)
        return chains

    async def _give_up(self: Coordinator, chain: int, reason: str) -> None:
        """Abort ``chain``: its members drop it, its batch is handed out again (ChainAborted)."""
        aborted = self._sched.abort(chain)
        del self._flight[chain]
        record = aborted.chain
        log.warning("chain %d (batch %d) given up: %s; its batch is handed out again", chain, record.batch, reason)
        for member in aborted.freed:
            await self.channels[member].send(Op.ABORT, {"chain": chain})
            self._emit(NodeState, node=member, stage=self._stage_of[member], state="idle")
        self._emit(ChainAborted, chain=chain, batch=record.batch, nodes=record.nodes, reason=reason)
        for hop in aborted.hops:
            await self._hop(hop)
