"""The DHP control vocabulary and the typed link through which the coordinator talks to one node.

The engine never imports ``nodes/``: the coordinator speaks :class:`Op` messages through a
:class:`NodeLink`, and ``nodes/client.py`` implements that link over the wire transport (where each
op travels in a frame of the closest ``nodes.wire.MessageType`` with ``{"op": name}`` in its header).

Per mini-batch (dynamic chains, paper Fig. 4b)::

    coordinator -> stage-1 node   START {chain, batch, iteration, prepare?}
    stage-s node -> coordinator   FORWARD_DONE {chain, ms, to?}
    coordinator -> stage-s node   NEXT_HOP {chain, node, host, port, prepare?}  (a free stage-s+1 node;
                                  ``prepare``: the batch a stage-1 node STARTs next, to build while it waits)
    stage-s node -> that node     ACTIVATION {chain, batch, iteration, reply_to} + activation
    last stage -> its predecessor GRADIENT {chain} + input gradient        (after loss and backward)
    every node -> coordinator     BACKWARD_DONE {chain, loss?, timing}     (stage 1's ends the iteration)

Fixed chains (Fig. 4a) know every next hop before the run: ASSIGN names each node's ``successor``, the node hands
its activation on as soon as its forward is done and reports where (``to``) in FORWARD_DONE, and no NEXT_HOP is
sent, which takes one coordinator round trip per stage off each mini-batch's critical path; a stage-1 node learns
the batch it builds ahead (``prepare``) from START instead.
With overlap, a node sends BACKWARD_DONE once its backward is done and its gradient is on its way.
A node holds one mini-batch at a time; ABORT {chain} makes it drop a chain whose member was lost.
Requests that expect an answer carry ``req`` (an int) and the answer echoes it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from engine.errors import EngineError


class Op(str, enum.Enum):
    """What a control or data message asks or reports (the header's ``op``)."""

    ATTACH = "attach"
    """coordinator -> node, first message of a control connection; answered by ATTACHED."""
    ATTACHED = "attached"
    """node -> coordinator: ``{name, memory_budget, emulated, data}`` (what the node offers)."""
    ASSIGN = "assign"
    """coordinator -> node: a stage, its initial weights (tensors), optimiser, emulation and data settings."""
    ASSIGNED = "assigned"
    """node -> coordinator: the stage is loaded; ``data`` describes the stage-1 dataset (else null)."""
    REFUSED = "refused"
    """node -> coordinator: the assignment does not fit; ``reason``, ``need`` and ``budget`` bytes."""
    START = "start"
    """coordinator -> stage-1 node: read mini-batch ``batch`` and run the forward of chain ``chain`` (``prepare``: the
    batch to build next, on a fixed chain)."""
    FORWARD_DONE = "forward_done"
    """node -> coordinator: the forward of ``chain`` is done; the node waits for NEXT_HOP (or, ``to``, a fixed chain's
    node says where it handed the activation)."""
    NEXT_HOP = "next_hop"
    """coordinator -> node: send the activation of ``chain`` to ``node`` at ``host:port`` (``prepare``: build that batch now)."""
    ACTIVATION = "activation"
    """node -> next node (data connection): the activation of ``chain``; ``reply_to`` is where the gradient goes."""
    GRADIENT = "gradient"
    """node -> previous node (data connection): the gradient of the activation it sent for ``chain``."""
    BACKWARD_DONE = "backward_done"
    """node -> coordinator: backward and weight update of ``chain`` done (``loss`` from the last stage)."""
    ABORT = "abort"
    """coordinator -> node: drop ``chain`` (a member was lost); the node is free."""
    FAILED = "failed"
    """node -> coordinator: ``chain`` failed here (``reason``; ``peer`` when a peer could not be reached)."""
    GET_PARAMS = "get_params"
    """coordinator -> node: send the stage's parameters and BN buffers (answered by PARAMS)."""
    PARAMS = "params"
    """node -> coordinator: ``keys`` and one tensor per key."""
    SET_PARAMS = "set_params"
    """coordinator -> node: load ``keys`` + tensors (averaged replicas) and, with ``optim``, continue with that
    re-planned schedule (a time budget); answered by PARAMS_SET."""
    PARAMS_SET = "params_set"
    """node -> coordinator: the parameters were loaded."""
    TELEMETRY = "telemetry"
    """coordinator -> node: ask for a telemetry sample (answered by SAMPLE)."""
    SAMPLE = "sample"
    """node -> coordinator: ``sample`` (nodes.telemetry JSON form) and ``emulation`` pacing statistics."""
    PING = "ping"
    """either way: liveness probe, answered by PONG."""
    PONG = "pong"
    """answer to PING."""
    ERROR = "error"
    """node -> coordinator: a request could not be served (``reason``)."""
    SHUTDOWN = "shutdown"
    """coordinator -> node: stop the agent process cleanly."""


@dataclass(frozen=True)
class Message:
    """One message received from a node."""

    op: Op
    header: dict[str, Any]
    """Everything but ``op``, as JSON round-trips it."""
    tensors: tuple[torch.Tensor, ...] = ()


class LinkError(EngineError):
    """A link to a node failed: closed, reset, refused, or a wait ran out (:class:`LinkTimeout`)."""


class LinkTimeout(LinkError):
    """A wait on a node link lasted longer than its timeout."""


class NodeLink(Protocol):
    """A control connection to one node agent (implemented by ``nodes.client.NodeClient``)."""

    name: str
    """The node's name."""

    async def send(self, op: Op, header: Mapping[str, Any] | None = None, tensors: Sequence[torch.Tensor] = ()) -> None:
        """Send one message; raises :class:`LinkError` (or :class:`LinkTimeout`) when it cannot."""

    async def recv(self, timeout: float | None = None) -> Message:
        """The next message from the node; raises :class:`LinkError`, :class:`LinkTimeout` after ``timeout`` s."""

    def close(self) -> None:
        """Close the connection; pending and later calls raise :class:`LinkError`."""


def pack_state(state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[torch.Tensor]]:
    """A state dict as (keys, tensors) for a message; the tensors are sent from their own memory."""
    keys = list(state)
    return keys, [state[key].detach().cpu().contiguous() for key in keys]


def unpack_state(header: Mapping[str, Any], tensors: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict carried by a message whose header lists ``keys``; EngineError if they do not match."""
    keys = header.get("keys")
    if not isinstance(keys, list) or len(keys) != len(tensors) or not all(isinstance(k, str) for k in keys):
        raise EngineError(f"a state message must list one key per tensor, got {len(tensors)} tensors and keys {keys!r:.80}")
    return dict(zip(keys, tensors))
