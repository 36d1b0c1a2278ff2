"""Freeze (linear probe) and fine-tune evaluation of a pretrained encoder (paper section 5, Fig. 6)."""

from __future__ import annotations

import copy
import logging
from dataclasses import asdict, dataclass
from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from engine.augment.pipelines import channel_stats
from engine.checkpoint import load_checkpoint
from engine.data.folder import ImageSet
from engine.data.split import SplitMethod, split_indices
from engine.device import resolve_device
from engine.errors import CheckpointError, ConfigError
from engine.finetune import finetune_classifier
from engine.model import LiteSRL, ModelConfig, build_model
from engine.schedule import cosine_lr

log = logging.getLogger(__name__)
Mode = Literal["freeze", "finetune"]
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalConfig:
    """An evaluation protocol; identical settings make encoders comparable."""

    mode: Mode = "freeze"
    """``freeze``: linear classifier on fixed backbone features. ``finetune``: backbone trained too."""
    train_fraction: float = 0.2
    """Share of each class's images with labels (paper: 10 %, 20 %, 50 %); the rest is the test set."""
    split: SplitMethod = "stratified"
    """``stratified`` random per class, or ``block`` for sets of near-duplicate neighbours (MSTAR)."""
    block_size: int = 10
    """Files per block with ``split=block``."""
    seed: int = 0
    """Seeds the split, the classifier initialisation and the batch order."""
    image_size: int = 64
    """Side of the images fed to the encoder."""
    epochs: int = 200
    """Classifier epochs (paper: 200 for freeze). Fine-tuning defaults to fewer on a CPU."""
    batch_size: int = 64
    """Mini-batch of the classifier (paper: 64)."""
    lr: float = 1e-3
    """Adam learning rate of the linear classifier, decayed with a cosine (paper 5)."""
    backbone_lr: float = 1e-4
    """Adam learning rate of the backbone when fine-tuning."""

    def __post_init__(self) -> None:
        if self.mode not in ("freeze", "finetune"):
            raise ConfigError(f"unknown evaluation mode {self.mode!r}; choose freeze or finetune")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be >= 1")


@dataclass
class EvalResult:
    """Scores of one evaluation, JSON-ready except for the features kept for the t-SNE plot."""

    mode: str
    overall_accuracy: float
    per_class_accuracy: dict[str, float]
    confusion: list[list[int]]
    classes: list[str]
    train_images: int
    test_images: int
    encoder: str
    config: dict
    test_features: np.ndarray | None = None
    test_labels: np.ndarray | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("test_features")
        data.pop("test_labels")
        return data


def load_encoder(checkpoint: str | None, model_config: ModelConfig, seed: int) -> tuple[LiteSRL, tuple | None, str]:
    """The model from ``checkpoint`` (with its pretraining normalisation), or a random-init one."""
    if checkpoint is None:
        torch.manual_seed(seed)
        return build_model(model_config), None, "random init"
    data = load_checkpoint(checkpoint)
    config = ModelConfig.from_dict(data["model_config"])
    model = build_model(config)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {checkpoint} does not fit its own model config: {str(exc).splitlines()[0]}") from None
    norm = data.get("normalisation")
    return model, (norm["mean"], norm["std"]) if norm else None, f"{checkpoint} (step {data.get('step', '?')})"


def evaluate(
    images: ImageSet,
    config: EvalConfig,
    checkpoint: str | None = None,
    model_config: ModelConfig | None = None,
    device: str = "auto",
    on_progress: Progress | None = None,
) -> EvalResult:
    """Split ``images``, train the classifier on the labelled part, score the rest."""
    if not images.classes:
        raise ConfigError("evaluation needs a labelled dataset (class sub-folders)")
    model_config = model_config or ModelConfig(in_channels=images.images.shape[1])
    model, norm, encoder_name = load_encoder(checkpoint, model_config, config.seed)
    if model.config.in_channels != images.images.shape[1]:
        raise ConfigError(f"the encoder takes {model.config.in_channels} channel(s) but the images have {images.images.shape[1]}")
    train_idx, test_idx = split_indices(images.labels, config.train_fraction, config.seed, config.split, config.block_size)
    train, test = images.subset(train_idx), images.subset(test_idx)
    mean, std = norm if norm is not None else channel_stats(train.images)
    target = resolve_device(device)
    model = model.to(target)
    torch.manual_seed(config.seed)
    if config.mode == "freeze":
        train_x = extract_features(model, train.images, mean, std, config.image_size, target)
        test_x = extract_features(model, test.images, mean, std, config.image_size, target)
        classifier, center, scale = train_linear(train_x, train.labels, len(images.classes), config, on_progress)
        with torch.no_grad():
            predicted = classifier((test_x - center) / scale).argmax(dim=1)
        features = test_x
    else:
        tuned = finetune_classifier(copy.deepcopy(model.backbone), train, len(images.classes), mean, std, config, target, on_progress)
        features = run_module(tuned[0], test.images, mean, std, config.image_size, target)
        with torch.no_grad():
            predicted = tuned[1](features.to(target)).argmax(dim=1).cpu()
    return _score(predicted, test.labels, images.classes, config, encoder_name, len(train), features)


def _prepare(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int) -> torch.Tensor:
    x = images.float() / 255.0
    if x.shape[-1] != size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def extract_features(model: LiteSRL, images: torch.Tensor, mean, std, size: int, device: torch.device) -> torch.Tensor:
    """Backbone features (N, feature_dim) in eval mode (BN uses its running statistics)."""
    return run_module(model.backbone, images, mean, std, size, device)


@torch.no_grad()
def run_module(module: nn.Module, images: torch.Tensor, mean, std, size: int, device: torch.device, batch: int = 128) -> torch.Tensor:
    """Outputs of ``module`` in eval mode for uint8 ``images``, batched, on ``device``, returned on CPU."""
    module.eval()
    outputs = [module(_prepare(images[i : i + batch], mean, std, size).to(device)).float().cpu() for i in range(0, len(images), batch)]
    return torch.cat(outputs)


def train_linear(features: torch.Tensor, labels: torch.Tensor, num_classes: int, config: EvalConfig, on_progress: Progress | None):
    """Linear classifier on standardised features: Adam, mini-batches of ``batch_size``, cosine decay.

    Features are standardised with the training set's statistics (as a BN without affine would),
    so encoders with very different feature scales (random init vs trained) get the same optimiser.
    """
    center = features.mean(dim=0)
    scale = features.std(dim=0).clamp_min(1e-6)
    x = (features - center) / scale
    classifier = nn.Linear(x.shape[1], num_classes)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = max(1, -(-len(x) // config.batch_size))
    total = config.epochs * steps_per_epoch
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, config.lr)
            loss = nn.functional.cross_entropy(classifier(x[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if on_progress:
            on_progress("linear classifier", epoch + 1, config.epochs)
    return classifier.eval(), center, scale


def _score(predicted, truth, classes, config, encoder_name, train_count, features) -> EvalResult:
    k = len(classes)
    matrix = torch.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    per_class = {name: float(matrix[i, i] / max(1, matrix[i].sum())) for i, name in enumerate(classes)}
    return EvalResult(
        mode=config.mode,
        overall_accuracy=float((predicted == truth).float().mean()),
        per_class_accuracy=per_class,
        confusion=matrix.tolist(),
        classes=list(classes),
        train_images=train_count,
        test_images=len(truth),
        encoder=encoder_name,
        config=asdict(config),
        test_features=features.numpy(),
        test_labels=truth.numpy(),
    )
