"""Lite-SRL model: parameter budget, partitionable layers, inputs and configuration errors."""

import pytest
import torch

from engine.errors import ConfigError
from engine.model import ModelConfig, build_model
from engine.model.litesrl import count_parameters

PAPER_PARAMETERS = 12.82e6


def test_litesrl_resnet18_is_within_two_percent_of_the_paper():
    params = count_parameters(build_model(ModelConfig()))
    assert abs(params - PAPER_PARAMETERS) / PAPER_PARAMETERS < 0.02
    assert params == 12_885_312  # 11,176,512 backbone + 1,576,960 projection + 131,840 predictor


def test_simsiam_configuration_is_the_standard_22_7m_and_litesrl_is_under_0_6x():
    simsiam = count_parameters(build_model(ModelConfig(variant="simsiam")))
    litesrl = count_parameters(build_model(ModelConfig()))
    assert 22.6e6 < simsiam < 22.8e6
    assert litesrl / simsiam <= 0.6


def test_partitionable_layers_list_and_sequential_application_equals_forward():
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    names = [name for name, _ in model.partitionable_layers()]
    assert names == [
        "conv1", "bn1", "relu", "maxpool", "layer1_0", "layer1_1", "layer2_0", "layer2_1",
        "layer3_0", "layer3_1", "layer4_0", "layer4_1", "avgpool", "flatten",
        "proj0_linear", "proj0_bn", "proj0_relu", "proj1_linear", "proj1_bn", "proj1_relu", "head",
    ]
    x = torch.randn(4, 3, 32, 32)
    out = x
    for _, unit in model.partitionable_layers():
        out = unit(out)
    assert torch.equal(out, model(x).loss)


def test_every_parameter_belongs_to_exactly_one_partitionable_layer():
    model = build_model(ModelConfig(backbone="resnet34"))
    in_units = sum(p.numel() for _, unit in model.partitionable_layers() for p in unit.parameters())
    assert in_units == count_parameters(model)


@pytest.mark.parametrize("backbone", ["resnet34", "resnet50"])
def test_deeper_backbones_build_and_run(backbone):
    model = build_model(ModelConfig(backbone=backbone)).train()
    out = model(torch.randn(4, 3, 32, 32))
    assert out.e.shape == (4, 512) and out.loss.dim() == 0


def test_sar_takes_one_channel_and_the_compact_stem_keeps_resolution():
    sar = build_model(ModelConfig(in_channels=1))
    assert sar.backbone.conv1.in_channels == 1
    assert sar(torch.randn(4, 1, 32, 32)).e.shape == (4, 512)
    compact = build_model(ModelConfig(stem="compact")).eval()
    x = torch.randn(2, 3, 16, 16)
    assert compact.backbone[:3](x).shape[-1] == 16
    assert build_model(ModelConfig()).eval().backbone[:4](x).shape[-1] == 4


def test_predictor_output_layer_has_no_bn_or_relu():
    predictor = build_model(ModelConfig()).head.predictor
    assert isinstance(predictor[-1], torch.nn.Linear)
    assert predictor[0].out_features < predictor[0].in_features  # a bottleneck


@pytest.mark.parametrize("field,value", [("backbone", "vgg16"), ("variant", "byol"), ("in_channels", 2), ("stem", "tiny")])
def test_bad_configuration_is_a_config_error(field, value):
    with pytest.raises(ConfigError, match=str(value)):
        ModelConfig(**{field: value})
