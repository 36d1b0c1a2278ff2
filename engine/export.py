"""Exporting an encoder or classifier for deployment: a torchvision state dict, TorchScript, or ONNX."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from engine.checkpoint import load_checkpoint
from engine.classifier import KIND as CLASSIFIER
from engine.classifier import load_classifier
from engine.errors import ConfigError
from engine.evaluate import load_backbone
from engine.io import atomic_write, atomic_write_json
from engine.model import ModelConfig

Format = Literal["torchvision", "torchscript", "onnx"]
FORMATS = ("torchvision", "torchscript", "onnx")
ONNX_OPSET = 17
"""ONNX opset of the exported graph: supported by onnxruntime >= 1.12 and by TensorRT 8.5+ (JetPack 5.1 and 6)."""
SUFFIX = {"torchvision": ".pth", "torchscript": ".pt", "onnx": ".onnx"}


class Deployable(nn.Module):
    """A network with its input normalisation built in: float images in [0, 1], (N, C, S, S) -> outputs."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, network: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", mean.float().view(1, -1, 1, 1))
        self.register_buffer("std", std.float().view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


@dataclass(frozen=True)
class Exportable:
    """What a checkpoint offers for export."""

    network: nn.Module
    """The backbone (features) or the whole classifier (logits), in eval mode."""
    model_config: ModelConfig
    mean: torch.Tensor
    std: torch.Tensor
    image_size: int
    classes: list[str] | None
    """Class names for a classifier, None for an encoder."""


def exportable(checkpoint: str | Path) -> Exportable:
    """The network of a pretraining/baseline checkpoint (its backbone) or of a classifier checkpoint."""
    data = load_checkpoint(checkpoint)
    if data.get("kind") == CLASSIFIER:
        classifier, classes, preprocess, config = load_classifier(checkpoint)
        return Exportable(classifier, config, torch.tensor(preprocess.mean), torch.tensor(preprocess.std), preprocess.image_size,
                          classes)
    backbone, norm, _, config = load_backbone(str(checkpoint), ModelConfig(), 0)
    if norm is None:
        raise ConfigError(f"{checkpoint} stores no input normalisation; export a checkpoint written by litesrl pretrain or eval")
    size = int(data.get("pretrain_config", {}).get("augment", {}).get("size", 64))
    return Exportable(backbone.eval(), config, norm[0], norm[1], size, None)


def torchvision_state_dict(item: Exportable) -> dict[str, torch.Tensor]:
    """Weights named as ``torchvision.models.<backbone>()`` names them: an encoder loads into it with
    ``fc`` removed (``model.fc = nn.Identity()``), a classifier loads whole (its head becomes ``fc``)."""
    config = item.model_config
    if config.stem != "imagenet" or config.in_channels != 3:
        raise ConfigError("the torchvision format needs the imagenet stem and "
                          f"3 input channels (this encoder: {config.stem} stem, "
                          f"{config.in_channels} channel(s)); export torchscript or onnx instead")
    state = item.network.state_dict()
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("backbone.")
        key = re.sub(r"^(layer\d)_(\d+)\.", r"\1.\2.", key)
        renamed[re.sub(r"^head\.", "fc.", key)] = value
    return renamed


def export(checkpoint: str | Path, fmt: str, out: str | Path) -> Path:
    """Write ``checkpoint`` in ``fmt`` to ``out`` (atomically) and a metadata file ``out.json`` beside it."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose {', '.join(FORMATS)}")
    if fmt == "onnx":
        try:
            import onnx  # noqa: F401
        except ImportError:
            raise ConfigError("the onnx export needs the 'onnx' package: pip install 'litesrl[export]'") from None
    item = exportable(checkpoint)
    out = Path(out)
    channels = item.model_config.in_channels
    example = torch.rand(2, channels, item.image_size, item.image_size)
    if fmt == "torchvision":
        state = torchvision_state_dict(item)
        atomic_write(out, lambda handle: torch.save(state, handle))
    else:
        module = Deployable(item.network, item.mean, item.std).eval()
        buffer = io.BytesIO()
        if fmt == "torchscript":
            with torch.no_grad():
                torch.jit.save(torch.jit.trace(module, example), buffer)
        else:
            _onnx(module, example, buffer, "logits" if item.classes else "features")
        atomic_write(out, lambda handle: handle.write(buffer.getbuffer()))
    atomic_write_json(out.with_name(out.name + ".json"), {
        "format": fmt, "source": str(checkpoint), "backbone": item.model_config.backbone, "stem": item.model_config.stem,
        "input": f"float32 (N, {channels}, {item.image_size}, {item.image_size}) in [0, 1]"
                 + ("" if fmt != "torchvision" else ", then normalised with mean/std"),
        "normalisation_built_in": fmt != "torchvision", "mean": item.mean.tolist(), "std": item.std.tolist(),
        "output": (f"logits over classes (N, {len(item.classes)})" if item.classes
                   else f"features (N, {item.model_config.feature_dim})"),
        "classes": item.classes, "onnx_opset": ONNX_OPSET if fmt == "onnx" else None,
    })
    return out


def _onnx(module: nn.Module, example: torch.Tensor, buffer: io.BytesIO, output: str) -> None:
    import warnings

    import onnx

    with warnings.catch_warnings():  # the TorchScript-based exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), buffer, opset_version=ONNX_OPSET, dynamo=False, input_names=["images"],  # type: ignore[arg-type]
                          output_names=[output], dynamic_axes={"images": {0: "batch"}, output: {0: "batch"}})
    onnx.checker.check_model(onnx.load_from_string(buffer.getvalue()))
