"""Lite-SRL: ResNet backbone + projection (the encoder), prediction MLP and loss, cuttable into partitions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from engine.loss import SymmetricNegativeCosine
from engine.model.backbone import backbone_layers
from engine.model.config import ModelConfig
from engine.model.heads import prediction_mlp, projection_layers


class PredictionHead(nn.Module):
    """Predictor + loss: the last partitionable unit, which always stays on the last stage.

    Its input is the encoder output e of both views, (2B, D); its output is the scalar loss.
    Keeping predictor and loss together means no stage ever has to forward the detached targets.
    """

    def __init__(self, predictor: nn.Module) -> None:
        super().__init__()
        self.predictor = predictor
        self.loss = SymmetricNegativeCosine()

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return self.loss(self.predictor(e), e)


@dataclass
class StepOutput:
    """What one forward pass of the whole model yields."""

    loss: torch.Tensor
    """Scalar symmetric negative cosine, in [-1, 1]."""
    e: torch.Tensor
    """Encoder output of both views, (2B, D); used for the collapse indicator."""


class LiteSRL(nn.Module):
    """The self-supervised model of the paper (Fig. 2), or the SimSiam configuration.

    ``forward(views)`` takes both augmented views concatenated into one batch, (2B, C, H, W),
    and returns the loss: the sequential form of paper 3.2.2, which lets the model be cut anywhere
    along ``partitionable_layers()``.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = nn.Sequential(backbone_layers(config))
        self.projection = nn.Sequential(projection_layers(config.feature_dim, config.heads))
        self.head = PredictionHead(prediction_mlp(config.heads))

    def forward(self, views: torch.Tensor) -> StepOutput:
        e = self.projection(self.backbone(views))  # (2B, D)
        return StepOutput(loss=self.head(e), e=e)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone features for evaluation, (B, feature_dim)."""
        return self.backbone(images)

    def partitionable_layers(self) -> list[tuple[str, nn.Module]]:
        """The model as an ordered list of (name, module) cut units.

        Applying them in order to (2B, C, H, W) gives the loss. A cut may fall after any unit but
        the last: ``head`` (predictor + loss) needs the detached encoder outputs, so it stays whole.
        """
        units = list(self.backbone.named_children()) + list(self.projection.named_children())
        return units + [("head", self.head)]


def build_model(config: ModelConfig) -> LiteSRL:
    """Build a freshly initialised model for ``config``."""
    return LiteSRL(config)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
