"""Symmetric negative-cosine loss with stop-gradient, in the paper's sequential form (eq. 5, Fig. 3a)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SymmetricNegativeCosine(nn.Module):
    """L = 1/2 N(p_a, sg(e_b)) + 1/2 N(p_b, sg(e_a)), N = negative cosine similarity (paper eq. 1-5).

    Sequential form (paper 3.2.2): both views went through the encoder as one batch of 2B, so
    ``p`` and ``e`` are (2B, D) with view a in the first B rows and view b in the last B. The
    targets are the encoder outputs of the *other* view, detached, so the encoder receives gradient
    only through the predictor branch. The value lies in [-1, 1]; -1 means perfect agreement.

    Example::

        loss_fn = SymmetricNegativeCosine()
        loss = loss_fn(predictor(e), e)   # e = encoder(torch.cat([x_a, x_b]))
    """

    def forward(self, p: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if p.shape != e.shape or p.dim() != 2 or p.shape[0] % 2:
            raise ValueError(f"p and e must both be (2B, D) with an even batch, got {tuple(p.shape)} and {tuple(e.shape)}")
        e_a, e_b = e.detach().chunk(2)  # stop-gradient on the encoder outputs (eq. 4)
        target = torch.cat([e_b, e_a])  # row i of view a is paired with row i of view b
        return -F.cosine_similarity(p, target, dim=1).mean()


def collapse_indicator(e: torch.Tensor) -> float:
    """Std over the batch of the L2-normalised encoder output, averaged over dimensions.

    SimSiam's collapse check: about 1/sqrt(D) for healthy, spread-out outputs, 0 when every image
    maps to the same vector.
    """
    with torch.no_grad():
        return F.normalize(e.float(), dim=1).std(dim=0).mean().item()
