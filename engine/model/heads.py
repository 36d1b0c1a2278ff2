"""Projection MLP (part of the encoder) and bottleneck prediction MLP, as named layer lists."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from engine.model.config import HeadSizes


def projection_layers(in_dim: int, sizes: HeadSizes) -> OrderedDict[str, nn.Module]:
    """Projection MLP: ``projection_layers`` Linear-BN(-ReLU) blocks, each a separate cut point.

    Linear layers feeding a BN carry no bias (BN's shift makes it redundant). Lite-SRL ends with
    BN-ReLU like every other block (paper Fig. 2); SimSiam ends with BN only.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    widths = [in_dim] + [sizes.projection_hidden] * (sizes.projection_layers - 1) + [sizes.projection_out]
    for index in range(sizes.projection_layers):
        last = index == sizes.projection_layers - 1
        layers[f"proj{index}_linear"] = nn.Linear(widths[index], widths[index + 1], bias=False)
        layers[f"proj{index}_bn"] = nn.BatchNorm1d(widths[index + 1])
        if not last or sizes.projection_output_relu:
            layers[f"proj{index}_relu"] = nn.ReLU(inplace=False)
    return layers


def prediction_mlp(sizes: HeadSizes) -> nn.Sequential:
    """Bottleneck prediction MLP d -> h -> d; its output layer has neither BN nor ReLU (paper 3.2.1)."""
    d, h = sizes.projection_out, sizes.prediction_hidden
    return nn.Sequential(
        nn.Linear(d, h, bias=False),
        nn.BatchNorm1d(h),
        nn.ReLU(inplace=False),
        nn.Linear(h, d),
    )
