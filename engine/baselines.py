"""The paper's comparison methods (SimCLR, MoCo v2, BYOL, SwAV) on lightly's heads and losses, in our pretraining loop.

Optional (``pip install 'litesrl[baselines]'``). Each method uses the same ResNet backbone as
Lite-SRL (``engine.model.backbone``), so its checkpoint's ``backbone.*`` weights are evaluated,
predicted with and exported exactly like ours; the pretraining loop (schedule, budget, precision,
torchrun, checkpoints) is ``engine.pretrain.Pretrainer``'s. Heads are sized for ResNet-18's 512-d
features as in lightly's ResNet-18 examples; SwAV uses the two views only (no multi-crop).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from engine.errors import ConfigError
from engine.model import ModelConfig
from engine.model.backbone import backbone_layers
from engine.model.litesrl import StepOutput
from engine.pretrain import Pretrainer

METHODS = ("simclr", "mocov2", "byol", "swav")
MOMENTUM = (0.99, 1.0)
"""Target-network momentum of MoCo v2 and BYOL, raised from the first to the second value on a cosine over the run."""


def _lightly():
    try:
        import lightly  # noqa: F401
    except ImportError:
        raise ConfigError("the baselines need the 'lightly' package: pip install 'litesrl[baselines]'") from None


class Baseline(nn.Module):
    """One comparison method. ``forward(views)`` takes both views as one (2B, C, S, S) batch, view a
    over view b (as Lite-SRL does) and returns the loss and the online embeddings (2B, D)."""

    def __init__(self, method: str, config: ModelConfig) -> None:
        super().__init__()
        _lightly()
        from lightly.loss import NegativeCosineSimilarity, NTXentLoss, SwaVLoss
        from lightly.models.modules import (
            BYOLPredictionHead,
            BYOLProjectionHead,
            MoCoProjectionHead,
            SimCLRProjectionHead,
            SwaVProjectionHead,
            SwaVPrototypes,
        )

        if method not in METHODS:
            raise ConfigError(f"unknown baseline {method!r}; choose {', '.join(METHODS)}")
        self.method = method
        width = config.feature_dim
        self.backbone = nn.Sequential(backbone_layers(config))
        self.predictor: nn.Module | None = None
        self.prototypes: nn.Module | None = None
        if method == "simclr":  # Chen et al. 2020
            self.projection: nn.Module = SimCLRProjectionHead(width, width, 128)
            self.criterion: nn.Module = NTXentLoss(temperature=0.5)
        elif method == "mocov2":  # Chen et al. 2020b: MLP head, queue of 4096 keys, momentum encoder
            self.projection = MoCoProjectionHead(width, width, 128)
            self.criterion = NTXentLoss(temperature=0.2, memory_bank_size=(4096, 128))
        elif method == "byol":  # Grill et al. 2020
            self.projection = BYOLProjectionHead(width, 1024, 256)
            self.predictor = BYOLPredictionHead(256, 1024, 256)
            self.criterion = NegativeCosineSimilarity()
        else:  # SwAV, Caron et al. 2020: online clustering onto prototypes, Sinkhorn-Knopp codes
            self.projection = SwaVProjectionHead(width, width, 128)
            self.prototypes = SwaVPrototypes(128, n_prototypes=512)
            self.criterion = SwaVLoss()
        self.target: nn.Module | None = None
        if method in ("mocov2", "byol"):
            self.target = copy.deepcopy(nn.Sequential(self.backbone, self.projection))
            self.target.requires_grad_(False)

    def forward(self, views: torch.Tensor) -> StepOutput:
        e = self.projection(self.backbone(views))  # (2B, D)
        e_a, e_b = e.chunk(2)
        if self.method == "simclr":
            loss = self.criterion(e_a, e_b)
        elif self.target is not None:
            with torch.no_grad():
                k_a, k_b = self.target(views).chunk(2)
            if self.predictor is not None:  # BYOL: predict the other view's target
                p_a, p_b = self.predictor(e).chunk(2)
                loss = 0.5 * (self.criterion(p_a, k_b) + self.criterion(p_b, k_a))
            else:  # MoCo v2: the other view's key is the positive, the queue the negatives
                loss = 0.5 * (self.criterion(e_a, k_b) + self.criterion(e_b, k_a))
        else:
            assert self.prototypes is not None
            self.prototypes.normalize()  # type: ignore[operator]
            scores = self.prototypes(nn.functional.normalize(e, dim=1)).chunk(2)
            loss = self.criterion(list(scores), [])
        return StepOutput(loss=loss, e=e)

    @torch.no_grad()
    def update_target(self, progress: float) -> None:
        """Move the momentum encoder towards the online one (MoCo v2, BYOL); ``progress`` in [0, 1]."""
        if self.target is None:
            return
        from lightly.models.utils import update_momentum
        from lightly.utils.scheduler import cosine_schedule

        momentum = cosine_schedule(int(progress * 1000), 1000, MOMENTUM[0], MOMENTUM[1])
        update_momentum(nn.Sequential(self.backbone, self.projection), self.target, m=momentum)


class BaselinePretrainer(Pretrainer):
    """Pretrains a comparison method with Lite-SRL's loop: same data, batches, views, SGD, schedule and budget."""

    def __init__(self, method: str, *args, **kwargs) -> None:
        self.method = method
        super().__init__(*args, **kwargs)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return f"baseline-{self.method}"

    def build_model(self) -> Baseline:  # type: ignore[override]
        return Baseline(self.method, self.config.model)

    def after_step(self) -> None:
        model = self.model
        assert isinstance(model, Baseline)
        model.update_target((self.step + 1) / self.config.steps)
