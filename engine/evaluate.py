"""Freeze (linear and kNN probes) and fine-tune evaluation of a pretrained encoder (paper section 5, Fig. 6)."""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from engine.augment.pipelines import channel_stats
from engine.checkpoint import load_checkpoint
from engine.data.folder import ImageSet
from engine.data.split import split_indices
from engine.device import resolve_device
from engine.errors import CheckpointError, ConfigError, DataError
from engine.eval_config import EvalConfig, Mode, Progress
from engine.finetune import finetune_classifier
from engine.model import LiteSRL, ModelConfig, build_model
from engine.model.backbone import backbone_layers
from engine.probe import fit_linear, knn_predict

__all__ = ["EvalConfig", "EvalResult", "Mode", "Progress", "evaluate", "load_backbone", "load_encoder"]
Normalisation = tuple[torch.Tensor, torch.Tensor]


@dataclass
class EvalResult:
    """Scores of one evaluation, JSON-ready except for the classifier and the t-SNE features."""

    mode: str
    overall_accuracy: float
    """Accuracy of the linear classifier (freeze) or of the fine-tuned network."""
    knn_accuracy: float | None
    """Accuracy of the kNN probe (freeze mode with ``knn_k`` > 0), else None."""
    per_class_accuracy: dict[str, float]
    confusion: list[list[int]]
    classes: list[str]
    train_images: int
    test_images: int
    encoder: str
    config: dict
    test_features: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    classifier: nn.Module | None = field(default=None, repr=False)
    """``Sequential(backbone=..., head=Linear)`` mapping normalised images to logits (for ``save_classifier``)."""
    normalisation: Normalisation | None = field(default=None, repr=False)
    """Per-channel (mean, std) the classifier's inputs were normalised with."""

    def to_json(self) -> dict:
        skip = ("test_features", "test_labels", "classifier", "normalisation")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


def load_encoder(checkpoint: str | None, model_config: ModelConfig, seed: int) -> tuple[LiteSRL, tuple | None, str]:
    """The model from a pretraining ``checkpoint`` (with its normalisation), or a random-init one."""
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
    return model, _normalisation(data), f"{checkpoint} (step {data.get('step', '?')})"


def load_backbone(checkpoint: str | None, model_config: ModelConfig,
                  seed: int) -> tuple[nn.Sequential, Normalisation | None, str, ModelConfig]:
    """The backbone of any litesrl checkpoint (pretraining, baseline or classifier: all store it under
    ``backbone.``), or a random-init one seeded by ``seed``; with its normalisation, a display name
    and its model config."""
    if checkpoint is None:
        torch.manual_seed(seed)
        return nn.Sequential(backbone_layers(model_config)), None, "random init", model_config
    data = load_checkpoint(checkpoint)
    config = ModelConfig.from_dict(data["model_config"])
    backbone = nn.Sequential(backbone_layers(config))
    state = {key[len("backbone."):]: value for key, value in data["model"].items() if key.startswith("backbone.")}
    try:
        backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {checkpoint} holds no backbone of "
                              f"its own model config: {str(exc).splitlines()[0]}") from None
    return backbone, _normalisation(data), f"{checkpoint} ({data.get('kind', 'pretrain')}, step {data.get('step', '?')})", config


def _normalisation(data: dict) -> Normalisation | None:
    norm = data.get("normalisation")
    return (torch.as_tensor(norm["mean"]), torch.as_tensor(norm["std"])) if norm else None


def check_classes(train: ImageSet, test: ImageSet) -> None:
    """A separate test folder must hold exactly the training folder's classes (same names, same order)."""
    if list(train.classes) != list(test.classes):
        raise DataError(f"the test folder's classes {{{', '.join(test.classes)}}} differ from the training folder's "
                        f"{{{', '.join(train.classes)}}}")


def check_fraction(images: ImageSet, fraction: float) -> None:
    """Every class must keep at least one training image at ``fraction``."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"train fraction must be in (0, 1), got {fraction}")
    counts = torch.bincount(images.labels, minlength=len(images.classes)).tolist()
    for name, count in zip(images.classes, counts):
        if round(fraction * count) < 1:
            raise DataError(f"train fraction {fraction:g} leaves class {name!r} ({count} images) without a training image")


def split(images: ImageSet, test_images: ImageSet | None, config: EvalConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices into ``images`` of the training part and, without a test folder, of the test part."""
    check_fraction(images, config.train_fraction)
    if test_images is None:
        if config.train_fraction >= 1.0:
            raise ConfigError("a train fraction of 1 leaves no test images; give --test-data or a fraction below 1")
        return split_indices(images.labels, config.train_fraction, config.seed, config.split, config.block_size)
    if config.train_fraction >= 1.0:
        return torch.arange(len(images)), None
    return split_indices(images.labels, config.train_fraction, config.seed, config.split, config.block_size)[0], None


def evaluate(
    images: ImageSet,
    config: EvalConfig,
    checkpoint: str | None = None,
    model_config: ModelConfig | None = None,
    device: str = "auto",
    on_progress: Progress | None = None,
    test_images: ImageSet | None = None,
) -> EvalResult:
    """Train the classifier on a labelled part of ``images`` and score the rest, or ``test_images``."""
    if not images.classes:
        raise ConfigError("evaluation needs a labelled dataset (class sub-folders)")
    if test_images is not None:
        check_classes(images, test_images)
    train_idx, test_idx = split(images, test_images, config)
    backbone, norm, name, _ = load_backbone(checkpoint, model_config or ModelConfig(in_channels=images.images.shape[1]),
                                            config.seed)
    check_channels(backbone, images)
    mean, std = norm if norm is not None else channel_stats(images.images)
    target = resolve_device(device)
    backbone = backbone.to(target)
    train = images.subset(train_idx)
    test = images.subset(test_idx) if test_idx is not None else test_images
    assert test is not None  # split() returns test indices exactly when there is no test folder
    torch.manual_seed(config.seed)
    knn = None
    if config.mode == "freeze":
        train_x = run_module(backbone, train.images, mean, std, config.image_size, target)
        features = run_module(backbone, test.images, mean, std, config.image_size, target)
        head = fit_linear(train_x, train.labels, len(images.classes), config, on_progress)
        with torch.no_grad():
            predicted = head(features).argmax(dim=1)
        if config.knn_k:
            knn = float((knn_predict(train_x, train.labels, features, len(images.classes),
                                     config.knn_k) == test.labels).float().mean())
    else:
        tuned = finetune_classifier(copy.deepcopy(backbone), train, len(images.classes), mean, std, config, target, on_progress)
        backbone, head = tuned[0], tuned[1]  # type: ignore[assignment]
        features = run_module(backbone, test.images, mean, std, config.image_size, target)
        with torch.no_grad():
            predicted = head(features.to(target)).argmax(dim=1).cpu()
    classifier = nn.Sequential(OrderedDict(backbone=backbone, head=head)).cpu()
    result = score(predicted, test.labels, images.classes, config, name, len(train), features)
    result.knn_accuracy = knn
    result.classifier, result.normalisation = classifier.eval(), (mean, std)
    return result


def check_channels(backbone: nn.Module, images: ImageSet) -> None:
    channels = next(backbone.parameters()).shape[1]
    if channels != images.images.shape[1]:
        raise ConfigError(f"the encoder takes {channels} channel(s) but the images have {images.images.shape[1]}")


def prepare(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, C, size, size), resized (antialiased) and normalised per channel."""
    x = images.float() / 255.0
    if x.shape[-1] != size:
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


@torch.no_grad()
def run_module(module: nn.Module, images: torch.Tensor, mean, std, size: int, device: torch.device,
               batch: int = 128) -> torch.Tensor:
    """Outputs of ``module`` in eval mode (BN uses its running statistics) for uint8 ``images``,
    batched, on ``device``, returned on CPU."""
    module.eval()
    outputs = [module(prepare(images[i : i + batch], mean, std, size).to(device)).float().cpu()
               for i in range(0, len(images), batch)]
    return torch.cat(outputs)


def score(predicted, truth, classes, config: EvalConfig, encoder_name: str, train_count: int, features) -> EvalResult:
    k = len(classes)
    matrix = torch.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
    per_class = {name: float(matrix[i, i] / matrix[i].sum().clamp(min=1)) for i, name in enumerate(classes)}
    return EvalResult(
        mode=config.mode,
        overall_accuracy=float((predicted == truth).float().mean()),
        knn_accuracy=None,
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
