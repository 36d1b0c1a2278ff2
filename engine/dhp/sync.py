"""One replica-averaging round over the network (paper 6.2): fetch every replica's state, average, send back.

Runs while the chains are drained. A node that fails to answer is marked lost by its channel and left
out of the average; a stage with no replica left is an error, since its weights are gone.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Sequence

import torch

from engine.dhp.averaging import average_states
from engine.dhp.channel import NodeChannel
from engine.dhp.protocol import LinkError, Op, pack_state, unpack_state
from engine.errors import EngineError

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]


async def fetch_state(channel: NodeChannel, timeout: float) -> State:
    """A node's stage parameters and BN buffers; raises LinkError / NodeRequestError."""
    answer = await channel.request(Op.GET_PARAMS, {}, timeout=timeout, expect=(Op.PARAMS,))
    return unpack_state(answer.header, answer.tensors)


async def push_state(channel: NodeChannel, state: State, timeout: float) -> None:
    """Load ``state`` into a node's stage."""
    keys, tensors = pack_state(state)
    await channel.request(Op.SET_PARAMS, {"keys": keys}, tensors, timeout=timeout, expect=(Op.PARAMS_SET,))


async def average_round(stages: Sequence[Sequence[NodeChannel]], previous: Sequence[State], timeout: float) -> list[State]:
    """Average each stage over its live replicas and give every replica the result; returns the stage states.

    ``previous`` is what each stage started from at the last round (used for BN counters,
    ``engine.dhp.averaging``). A stage with one replica is only read.
    """
    fetched = await asyncio.gather(*(_fetch_all(replicas, timeout) for replicas in stages))
    averaged: list[State] = []
    for s, states in enumerate(fetched):
        if not states:
            raise EngineError(f"stage {s + 1}: no replica answered; its weights are gone")
        averaged.append(states[0][1] if len(states) == 1 else average_states([state for _, state in states], previous[s]))
    pushes = [push_state(channel, averaged[s], timeout)
              for s, states in enumerate(fetched) if len(states) > 1 for channel, _ in states]
    for result in await asyncio.gather(*pushes, return_exceptions=True):
        if isinstance(result, LinkError):
            log.warning("averaging: %s", result)
        elif isinstance(result, BaseException):
            raise result
    return averaged


async def _fetch_all(replicas: Sequence[NodeChannel], timeout: float) -> list[tuple[NodeChannel, State]]:
    results = await asyncio.gather(*(fetch_state(channel, timeout) for channel in replicas), return_exceptions=True)
    kept = []
    for channel, result in zip(replicas, results):
        if isinstance(result, LinkError):
            log.warning("averaging leaves out %s: %s", channel.name, result)
        elif isinstance(result, BaseException):
            raise result
        else:
            kept.append((channel, result))
    return kept
