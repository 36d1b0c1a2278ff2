"""Checks on tensors a node receives (activations, gradients, parameters, momentum) before it uses them."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nodes.errors import NodeError


class BadTensor(NodeError):
    """A received tensor of the wrong dtype or shape, or holding NaN or Inf; it is refused, not used."""


def check_received(tensor: torch.Tensor, what: str, *, dtype: torch.dtype | None = None,
                   shape: tuple[int, ...] | None = None, finite: bool = True) -> None:
    """Raise :class:`BadTensor` unless ``tensor`` is floating point, of ``dtype`` and ``shape`` when given,
    and (``finite``) free of NaN and Inf: one such value would spread through averaging to every replica."""
    if not tensor.is_floating_point():
        raise BadTensor(f"{what} of dtype {tensor.dtype} refused: a floating-point tensor is expected")
    if dtype is not None and tensor.dtype != dtype:
        raise BadTensor(f"{what} of dtype {tensor.dtype} refused: {dtype} expected")
    if shape is not None and tuple(tensor.shape) != shape:
        raise BadTensor(f"{what} of shape {tuple(tensor.shape)} refused: {shape} expected")
    if finite and not bool(torch.isfinite(tensor).all()):
        raise BadTensor(f"non-finite {what} refused (NaN or Inf)")


def check_state(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`BadTensor` unless every entry of ``state`` names an entry of ``reference`` with its dtype
    and shape, and every floating-point entry is finite (parameters, BN buffers, momentum alike)."""
    for key, tensor in state.items():
        ref = reference.get(key)
        if ref is None:
            raise BadTensor(f"{what}: unknown entry {key!r:.80}")
        if tensor.dtype != ref.dtype or tensor.shape != ref.shape:
            raise BadTensor(f"{what}: {key} is {tensor.dtype} {tuple(tensor.shape)}, "
                            f"{ref.dtype} {tuple(ref.shape)} expected")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise BadTensor(f"{what}: non-finite {key} refused (NaN or Inf)")
