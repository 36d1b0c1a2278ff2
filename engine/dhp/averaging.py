"""Averaging the replicas of one DHP stage (paper 6.2: parameters aggregated every 100 iterations).

With dynamic chains a stage served by ``r`` nodes trains ``r`` copies of its weights, each on the
mini-batches the scheduler gave it. Every ``K`` iterations the coordinator drains the chains,
averages each stage's copies and sends the result back to all of them.

* **Floating tensors** (weights, BN ``running_mean`` / ``running_var``) get the plain mean over
  the replicas by default, whatever their count (3/2/1 is fine), as the paper aggregates them. With
  ``weights`` (the mini-batches each replica trained since the last average, paper Table 6's
  329/331/340) they get the weighted mean instead: a replica that trained on more batches moved
  the weights further, and a replica that trained on none (an idle or just-rejoined node) no longer
  pulls the average back towards the previous state. ``litesrl train --average-weighting``
  chooses; ``benchmarks/dhp_accuracy.py`` measures both.
* With ``summed``, learnt floating tensors instead become ``previous + sum(replica - previous)``: every
  replica's update since the last average is applied, so each mini-batch a stage trained moves it as far
  as it would on one machine. A plain mean of ``r`` replicas' updates moves a stage about ``1/r`` as far
  per mini-batch (like a batch ``r`` times larger at the same learning rate), which
  ``benchmarks/dhp_accuracy.py`` measured as lost accuracy. BN running statistics are estimates of the
  data, not updates, and keep the mean. The sum is the first-order equivalent of the single machine's
  sequence of steps only while the replicas stay close, so it wants a short period (``average_every``).
* **Integer counters** (BN ``num_batches_tracked``) become ``previous + sum(replica - previous)``:
  every replica started from ``previous`` (the state sent at the last averaging), so this is the
  number of mini-batches the stage has seen, as single-machine training counts it. A mean or a sum
  would be wrong (a sum multiplies the count by ``r`` at every round; a mean divides the new
  batches by ``r``).
* A replica that rejoined after the last average started from a copy of a live one, not from
  ``previous``: its ``bases`` entry is that copy, so that each update (the donor's before the copy,
  the rejoined node's after it) is counted once in sums and counters.
* **Boolean tensors** must agree.

Every result keeps its tensor's dtype; results live on the device of the first replica's tensor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from engine.errors import EngineError


class AveragingError(EngineError):
    """Replica states that cannot be averaged (different keys, shapes or dtypes)."""


def average_states(
    states: Sequence[Mapping[str, torch.Tensor]], previous: Mapping[str, torch.Tensor],
    weights: Sequence[float] | None = None, summed: bool = False,
    bases: Sequence[Mapping[str, torch.Tensor] | None] | None = None,
) -> dict[str, torch.Tensor]:
    """The averaged state of one stage from its replicas' ``states``.

    ``previous`` is the state every replica started from (the last average, or the initial
    weights); it is used for integer counters, and with ``summed`` for the learnt floating entries.
    ``weights`` (one per replica, >= 0) makes the floating entries a weighted mean; all-zero weights
    fall back to the plain mean. ``summed`` applies every replica's update instead (BN running
    statistics keep the mean; ``weights`` must then be None). ``bases`` (one per replica, None for
    ``previous``) is where each replica started since the last average. Raises
    AveragingError when keys, shapes or dtypes differ, naming the replica and the key.
    """
    if not states:
        raise AveragingError("no replica states to average")
    if weights is not None and (len(weights) != len(states) or any(w < 0 for w in weights)):
        raise AveragingError(f"need one weight >= 0 per replica ({len(states)}), got {list(weights)}")
    if summed and weights is not None:
        raise AveragingError("summed updates take no weights: every replica's update counts in full")
    if bases is not None and len(bases) != len(states):
        raise AveragingError(f"need one base per replica ({len(states)}), got {len(bases)}")
    share = None if weights is None or sum(weights) == 0 else [w / sum(weights) for w in weights]
    keys = list(states[0])
    _same_keys(keys, previous, "the previous state")
    starts = [previous if base is None else base for base in (bases or [None] * len(states))]
    for index, start in enumerate(starts):
        if start is not previous:
            _same_keys(keys, start, f"the base of replica {index}")
    for index, state in enumerate(states[1:], start=1):
        _same_keys(keys, state, f"replica {index}")
    averaged = {}
    for key in keys:
        first = states[0][key]
        device = first.device
        for index, state in enumerate(states[1:], start=1):
            tensor = state[key]
            if tensor.shape != first.shape or tensor.dtype != first.dtype:
                raise AveragingError(
                    f"{key!r}: replica {index} has {tensor.dtype} {tuple(tensor.shape)} but replica 0 has "
                    f"{first.dtype} {tuple(first.shape)}"
                )
        values = [state[key].detach().to(device) for state in states]
        if first.is_floating_point() or first.is_complex():
            wide = torch.promote_types(first.dtype, torch.float32)  # half precision would lose the sum
            stacked = torch.stack([v.to(wide) for v in values])
            if summed and not is_statistic(key):
                base = _entry(previous, key, first).to(wide)
                begun = base if all(start is previous for start in starts) else torch.stack(
                    [_entry(start, key, first).to(wide) for start in starts])
                averaged[key] = (base + (stacked - begun).sum(dim=0)).to(first.dtype)
            elif share is None:
                averaged[key] = stacked.mean(dim=0).to(first.dtype)
            else:
                shape = (len(values),) + (1,) * first.dim()
                averaged[key] = (stacked * torch.tensor(share, dtype=wide, device=device).view(shape)).sum(dim=0).to(first.dtype)
        elif first.dtype == torch.bool:
            if any(not torch.equal(v, values[0]) for v in values[1:]):
                raise AveragingError(f"{key!r}: boolean tensors differ between replicas")
            averaged[key] = values[0].clone()
        else:
            base = _entry(previous, key, first)
            averaged[key] = base + sum(v - _entry(start, key, first) for v, start in zip(values, starts))
    return averaged


def divergence(states: Sequence[Mapping[str, torch.Tensor]]) -> float:
    """How far a stage's replicas drifted apart since they were last averaged: sqrt(mean_r ||w_r - w||^2) / ||w||,
    with w the replicas' mean, over the floating entries but the BN running statistics (which are estimates
    of the data, not learnt weights); 0 for a single replica."""
    if len(states) < 2:
        return 0.0
    spread = norm = 0.0
    for key, first in states[0].items():
        if not first.is_floating_point() or is_statistic(key):
            continue
        stacked = torch.stack([state[key].detach().double() for state in states])
        mean = stacked.mean(dim=0)
        spread += float(((stacked - mean) ** 2).sum()) / len(states)
        norm += float((mean ** 2).sum())
    return (spread ** 0.5) / (norm ** 0.5) if norm > 0 else 0.0


def is_statistic(key: str) -> bool:
    """A BN running statistic: an estimate of the data rather than a learnt weight."""
    return key.endswith(("running_mean", "running_var"))


def _entry(state: Mapping[str, torch.Tensor], key: str, first: torch.Tensor) -> torch.Tensor:
    """``state[key]`` on the replicas' device and dtype; AveragingError if its shape differs."""
    base = state[key].detach().to(device=first.device, dtype=first.dtype)
    if base.shape != first.shape:
        raise AveragingError(f"{key!r}: a starting state has shape {tuple(base.shape)}, replicas {tuple(first.shape)}")
    return base


def _same_keys(keys: list[str], state: Mapping[str, torch.Tensor], who: str) -> None:
    missing = [k for k in keys if k not in state]
    extra = [k for k in state if k not in set(keys)]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {missing[:3]}")
        if extra:
            parts.append(f"has unexpected {extra[:3]}")
        raise AveragingError(f"{who} does not match replica 0: it {' and '.join(parts)}")
