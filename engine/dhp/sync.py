"""One replica-averaging round over the network (paper 6.2): fetch every replica's state, average, send back.

Runs while the chains are drained. A node that fails to answer is marked lost by its channel and left
out of the average; a stage with no replica left is an error, since its weights are gone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence

import torch

from engine.dhp.averaging import average_states, divergence
from engine.dhp.channel import NodeChannel
from engine.dhp.protocol import LinkError, Op, pack_state, unpack_state
from engine.dhp.stage import split_momentum
from engine.errors import EngineError
from engine.optim import OptimConfig

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


async def fetch_state(channel: NodeChannel, timeout: float, momentum: bool = False) -> State:
    """A node's stage parameters and BN buffers (and SGD momentum buffers); raises LinkError / NodeRequestError."""
    answer = await channel.request(Op.GET_PARAMS, {"momentum": momentum}, timeout=timeout, expect=(Op.PARAMS,))
    return unpack_state(answer.header, answer.tensors)


async def push_state(channel: NodeChannel, state: State, timeout: float) -> None:
    """Load ``state`` into a node's stage."""
    keys, tensors = pack_state(state)
    await channel.request(Op.SET_PARAMS, {"keys": keys}, tensors, timeout=timeout, expect=(Op.PARAMS_SET,))


async def push_schedule(channels: Sequence[NodeChannel], optim: OptimConfig, timeout: float) -> None:
    """Give every node the re-planned schedule ``optim`` (a time budget); a node that fails is left to its channel."""
    results = await asyncio.gather(*(channel.request(Op.SET_PARAMS, {"keys": [], "optim": optim.to_dict()}, timeout=timeout,
                                                     expect=(Op.PARAMS_SET,)) for channel in channels),
                                   return_exceptions=True)
    for channel, result in zip(channels, results):
        if isinstance(result, LinkError):
            log.warning("schedule not delivered to %s: %s", channel.name, result)
        elif isinstance(result, BaseException):
            raise result


async def average_round(stages: Sequence[Sequence[NodeChannel]], previous: Sequence[State], timeout: float,
                        momentum: bool = False, batches: Mapping[str, int] | None = None, summed: bool = False,
                        bases: Mapping[str, State] | None = None) -> tuple[list[State], list[State], list[float]]:
    """Average each stage over its live replicas and give every replica the result.

    Returns the stage states; with ``momentum`` (for a checkpoint), each stage's SGD momentum
    averaged over its replicas (else empty dicts; the replicas keep their own momentum); and each
    stage's replica divergence before the average (``engine.dhp.averaging.divergence``). With
    ``batches`` (node -> mini-batches trained since the last round) the average is weighted by them; with
    ``summed`` every replica's update is applied instead (``engine.dhp.averaging.average_states``).
    ``bases`` (node -> state) names where a node that rejoined since the last round started from.
    ``previous`` is what each stage started from at the last round (used for BN counters,
    ``engine.dhp.averaging``). A stage with one replica is only read.
    """
    fetched = await asyncio.gather(*(_fetch_all(replicas, timeout, momentum) for replicas in stages))
    averaged: list[State] = []
    momenta: list[State] = []
    spread: list[float] = []
    for s, states in enumerate(fetched):
        if not states:
            raise EngineError(f"stage {s + 1}: no replica answered; its weights are gone")
        parts = [split_momentum(state) for _, state in states]
        weights = [w for w, _ in parts]
        shares = [batches.get(channel.name, 0) for channel, _ in states] if batches is not None else None
        starts = [(bases or {}).get(channel.name) for channel, _ in states]
        averaged.append(weights[0] if len(weights) == 1 else average_states(weights, previous[s], shares, summed, starts))
        momenta.append(_mean([m for _, m in parts]))
        spread.append(divergence(weights))
    pushes = [push_state(channel, averaged[s], timeout)
              for s, states in enumerate(fetched) if len(states) > 1 for channel, _ in states]
    for result in await asyncio.gather(*pushes, return_exceptions=True):
        if isinstance(result, LinkError):
            log.warning("averaging: %s", result)
        elif isinstance(result, BaseException):
            raise result
    return averaged, momenta, spread


def _mean(states: Sequence[State]) -> State:
    """Entry-wise mean over the states that hold each entry (a replica that never stepped has no momentum yet)."""
    keys = sorted(set().union(*states)) if states else []
    means = {}
    for key in keys:
        held = [state[key] for state in states if key in state]
        means[key] = torch.stack([t.float() for t in held]).mean(dim=0).to(held[0].dtype)
    return means


async def _fetch_all(replicas: Sequence[NodeChannel], timeout: float, momentum: bool) -> list[tuple[NodeChannel, State]]:
    results = await asyncio.gather(*(fetch_state(channel, timeout, momentum) for channel in replicas),
                                   return_exceptions=True)
    kept = []
    for channel, result in zip(replicas, results):
        if isinstance(result, LinkError):
            log.warning("averaging leaves out %s: %s", channel.name, result)
        elif isinstance(result, BaseException):
            raise result
        else:
            kept.append((channel, result))
    return kept
