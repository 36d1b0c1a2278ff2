"""ResNet backbone (torchvision, no ``fc``) flattened into named partitionable layers."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn
from torchvision import models

from engine.model.config import ModelConfig


def backbone_layers(config: ModelConfig) -> OrderedDict[str, nn.Module]:
    """The backbone as an ordered name -> module map whose sequential application is ResNet minus ``fc``.

    Residual blocks stay whole (paper 3.2.2: "parallel paths are not partitioned; the parallel zone
    is considered as a block"); the stem's conv, BN, ReLU and pool are separate cut points because
    nothing runs beside them. Weights use torchvision's default initialisation (no pretrained
    weights: none may be downloaded, and the paper trains from scratch).
    """
    resnet = getattr(models, config.backbone)(weights=None)
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    if config.stem == "imagenet":
        conv = resnet.conv1
        if config.in_channels != 3:
            conv = nn.Conv2d(config.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers["conv1"] = conv
        layers["bn1"] = resnet.bn1
        layers["relu"] = nn.ReLU(inplace=False)
        layers["maxpool"] = resnet.maxpool
    else:
        conv = nn.Conv2d(config.in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        layers["conv1"] = conv
        layers["bn1"] = resnet.bn1
        layers["relu"] = nn.ReLU(inplace=False)
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        for index, block in enumerate(getattr(resnet, stage)):
            layers[f"{stage}_{index}"] = block
    layers["avgpool"] = resnet.avgpool
    layers["flatten"] = nn.Flatten(1)
    return layers
