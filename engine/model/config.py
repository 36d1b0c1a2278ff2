"""Model configuration: backbone, head sizes and input handling, as a frozen dataclass."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from engine.errors import ConfigError

Backbone = Literal["resnet18", "resnet34", "resnet50"]
Variant = Literal["litesrl", "simsiam"]
Stem = Literal["imagenet", "compact"]

BACKBONE_WIDTH = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}


@dataclass(frozen=True)
class HeadSizes:
    """Widths of the projection MLP and the bottleneck prediction MLP."""

    projection_hidden: int
    """Width of the projection MLP's hidden layer."""
    projection_out: int
    """Width of the encoder output e (the projection's last layer)."""
    prediction_hidden: int
    """Bottleneck width of the prediction MLP (smaller than ``projection_out``)."""
    projection_layers: int
    """Number of Linear layers in the projection MLP (each followed by BN, see ``projection_output_relu``)."""
    projection_output_relu: bool
    """Whether the projection's last layer is followed by ReLU (Lite-SRL, paper Fig. 2) or only BN (SimSiam)."""


def head_sizes(variant: Variant, backbone: Backbone) -> HeadSizes:
    """Head widths of a variant.

    Lite-SRL (paper Fig. 2, 12.82 M parameters with ResNet-18): the paper gives the structure, not
    the widths. We pick a two-layer projection 512 -> 1536 -> 512, every layer Linear-BN-ReLU as the
    paper says, and a 4x bottleneck predictor 512 -> 128 -> 512 (SimSiam's 2048 -> 512 ratio). The
    output keeps ResNet-18's width, so the heads add 1.71 M parameters and the total with
    ResNet-18 is 12.89 M, +0.5 % of the paper's figure. The same widths serve ResNet-34/50 (only the
    first Linear grows with a 2048-d ResNet-50 feature), which keeps the heads light on a board.

    SimSiam (Chen & He 2021): a 2048-d three-layer projector (last layer BN, no ReLU) and a
    2048 -> 512 -> 2048 predictor: 22.72 M parameters with ResNet-18.
    """
    if variant == "simsiam":
        return HeadSizes(2048, 2048, 512, 3, False)
    return HeadSizes(1536, 512, 128, 2, True)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in every checkpoint."""

    backbone: Backbone = "resnet18"
    """torchvision ResNet depth used as the backbone (its ``fc`` is removed)."""
    variant: Variant = "litesrl"
    """Head design: ``litesrl`` (paper) or ``simsiam`` (the standard SimSiam heads, for comparison)."""
    in_channels: int = 3
    """Input channels: 3 for optical RGB, 1 for SAR magnitude. SAR gets a one-channel stem
    convolution rather than a grey image copied into three channels: same features, a third of the
    stem's multiply-adds, and no fake colour statistics in the first BN."""
    stem: Stem = "imagenet"
    """``imagenet``: torchvision's 7x7 stride-2 conv + 3x3 max-pool (input /4), right for 224 px.
    ``compact``: a 3x3 stride-1 conv and no max-pool (input /1), which keeps small inputs
    (64-128 px) from shrinking to a 2x2 map before the last stage."""

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_WIDTH:
            raise ConfigError(f"unknown backbone {self.backbone!r}; choose one of {', '.join(BACKBONE_WIDTH)}")
        if self.variant not in ("litesrl", "simsiam"):
            raise ConfigError(f"unknown model variant {self.variant!r}; choose litesrl or simsiam")
        if self.in_channels not in (1, 3):
            raise ConfigError(f"in_channels must be 1 (SAR) or 3 (optical), got {self.in_channels}")
        if self.stem not in ("imagenet", "compact"):
            raise ConfigError(f"unknown stem {self.stem!r}; choose imagenet or compact")

    @property
    def heads(self) -> HeadSizes:
        return head_sizes(self.variant, self.backbone)

    @property
    def feature_dim(self) -> int:
        """Width of the backbone feature used by linear evaluation."""
        return BACKBONE_WIDTH[self.backbone]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {k: data[k] for k in ("backbone", "variant", "in_channels", "stem") if k in data}
        return cls(**known)
