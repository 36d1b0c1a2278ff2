"""A deployable classifier checkpoint: encoder + linear head + class names + the preprocessing it expects."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.data.images import Modality
from engine.errors import CheckpointError
from engine.model import ModelConfig
from engine.model.backbone import backbone_layers

KIND = "classifier"


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the classifier's input; ``litesrl predict`` repeats exactly this."""

    modality: Modality
    """``optical`` (RGB) or ``sar`` (one-channel magnitude, scaled through dB)."""
    load_size: int
    """Side each image (or tile) is resized to, short side first, keeping the centre square."""
    centre_crop: int | None
    """Central pixels kept after loading (MSTAR: 80 of 128), or None."""
    image_size: int
    """Encoder input side the (cropped) image is resized to."""
    mean: tuple[float, ...]
    """Per-channel mean in [0, 1] units, subtracted before the encoder."""
    std: tuple[float, ...]
    """Per-channel standard deviation in [0, 1] units, divided by."""


def build_classifier(model_config: ModelConfig, num_classes: int) -> nn.Sequential:
    """``Sequential(backbone=ResNet minus fc, head=Linear)``: normalised images (N, C, S, S) -> logits (N, K)."""
    return nn.Sequential(OrderedDict(backbone=nn.Sequential(backbone_layers(model_config)),
                                     head=nn.Linear(model_config.feature_dim, num_classes)))


def save_classifier(path: str | Path, classifier: nn.Sequential, classes: list[str], model_config: ModelConfig,
                    preprocess: Preprocess, evaluation: dict) -> Path:
    """Atomically write the classifier; ``evaluation`` records how it was trained and scored."""
    return save_checkpoint(path, {
        "kind": KIND,
        "model_config": model_config.to_dict(),
        "model": classifier.state_dict(),
        "classes": list(classes),
        "preprocess": asdict(preprocess),
        "normalisation": {"mean": torch.tensor(preprocess.mean), "std": torch.tensor(preprocess.std)},
        "evaluation": evaluation,
    })


def load_classifier(path: str | Path) -> tuple[nn.Sequential, list[str], Preprocess, ModelConfig]:
    """The classifier in eval mode, its class names, its preprocessing and its model config."""
    data = load_checkpoint(path)
    if data.get("kind") != KIND:
        raise CheckpointError(f"{path} is a {data.get('kind', 'pretraining')} checkpoint, not a classifier; "
                              "write one with `litesrl eval --save-classifier`")
    config = ModelConfig.from_dict(data["model_config"])
    classes = list(data["classes"])
    classifier = build_classifier(config, len(classes))
    try:
        classifier.load_state_dict(data["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"classifier {path} does not fit its own model config: {str(exc).splitlines()[0]}") from None
    stored = dict(data["preprocess"])
    preprocess = Preprocess(**{**stored, "mean": tuple(stored["mean"]), "std": tuple(stored["std"])})
    return classifier.eval(), classes, preprocess, config
