"""Stage assignment (paper 3.3: CWB's partitions handed to the DHP nodes): one ASSIGN per node, weights included."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import torch

from engine.cwb.profile_format import Profile
from engine.dhp.channel import NodeChannel
from engine.dhp.emulation import Emulation
from engine.dhp.plan import RunPlan
from engine.dhp.protocol import Op, pack_state
from engine.dhp.schedule import fixed_successors
from engine.dhp.settings import RunSettings
from engine.dhp.stage import StageSpec
from engine.errors import EngineError

log = logging.getLogger(__name__)


class AssignmentRefused(EngineError):
    """A node refused its stage (over its memory budget); the message carries the node's numbers."""


def emulation_targets(profile: Profile, start: int, end: int) -> dict[str, Any]:
    """The profile's figures an emulated board paces a stage to (``engine.dhp.emulation.Emulation``)."""
    e = Emulation.from_profile(profile, start, end, speed=1.0, time_scale=1.0, bandwidth=1.0)
    return {"forward_ms": e.forward_ms, "backward_ms": e.backward_ms, "data_ms": e.data_ms,
            "output_bytes": e.output_bytes, "input_bytes": e.input_bytes}


def assign_header(settings: RunSettings, plan: RunPlan, profile: Profile, stage: int, node: str,
                  addresses: Mapping[str, tuple[str, int]]) -> dict[str, Any]:
    """The ASSIGN header for ``node`` serving ``stage`` (its weights travel as the message's tensors);
    ``peers`` lists every planned node's address, the only ones the node will dial; in fixed mode ``successor``
    names the node's next hop (the next node of its fixed chain), to which it hands each activation unasked."""
    address = addresses[node]
    start, end = plan.units[stage]
    data = None
    if stage == 0:
        data = replace(settings.data, path=settings.data_paths.get(node, settings.data.path)).to_dict()
    return {
        "stage": {"index": stage, "count": len(plan.units), "spec": StageSpec(settings.model, start, end).to_dict()},
        "optim": settings.optim.to_dict(),
        "seed": settings.seed,
        "memory": asdict(plan.memory[stage]),
        "emulation": emulation_targets(profile, start, end) if settings.emulate else None,
        "data": data,
        "overlap": settings.overlap,
        "address": {"host": address[0], "port": address[1]},
        "peers": {n: [*addresses[n]] for nodes in plan.stages for n in nodes if n in addresses},
        "successor": fixed_successors(plan.stages).get(node) if settings.mode == "fixed" else None,
    }


async def assign(channel: NodeChannel, header: Mapping[str, Any], state: Mapping[str, torch.Tensor],
                 timeout: float) -> dict[str, Any] | None:
    """Send one assignment; returns the node's dataset description (stage 1) or None.

    Raises AssignmentRefused with the node's reason (over budget), NodeRequestError or LinkError.
    """
    keys, tensors = pack_state(state)
    answer = await channel.request(Op.ASSIGN, {**header, "keys": keys}, tensors, timeout=timeout,
                                   expect=(Op.ASSIGNED, Op.REFUSED))
    if answer.op is Op.REFUSED:
        raise AssignmentRefused(answer.header.get("reason", f"{channel.name} refused its stage"))
    return answer.header.get("data")


async def assign_all(channels: Mapping[str, NodeChannel], settings: RunSettings, plan: RunPlan, profile: Profile,
                     states: Sequence[Mapping[str, torch.Tensor]], addresses: Mapping[str, tuple[str, int]],
                     ) -> dict[str, dict[str, Any]]:
    """Assign every planned node concurrently; returns each stage-1 node's dataset description.

    All stage-1 nodes must see the same dataset (count and channel statistics), or their batch ``k``
    would differ: EngineError names the first two that disagree.
    """
    jobs = {node: assign(channels[node], assign_header(settings, plan, profile, s, node, addresses),
                         states[s], settings.assign_timeout)
            for s, nodes in enumerate(plan.stages) for node in nodes}
    results = await asyncio.gather(*jobs.values(), return_exceptions=True)
    described: dict[str, dict[str, Any]] = {}
    for node, result in zip(jobs, results):
        if isinstance(result, BaseException):
            raise result
        if result is not None:
            described[node] = result
    if described:
        first_node, first = next(iter(described.items()))
        for node, data in described.items():
            if (data["images"], data["mean"], data["std"]) != (first["images"], first["mean"], first["std"]):
                raise EngineError(
                    f"stage-1 nodes read different datasets: {first_node} has {first['images']} images, "
                    f"{node} has {data['images']} (or other pixel statistics); give every stage-1 node the same data"
                )
    return described
