"""CWB profiler on tiny real models: every unit timed, bytes equal to what torch really holds, output feeds the search."""

from __future__ import annotations

import pytest
import torch

from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import identical_nodes
from engine.cwb.profile_format import load_profile, save_profile
from engine.cwb.profiler import ProfilerConfig, measure_memory, profile_model
from engine.cwb.search import search
from engine.cwb.transfer import Network
from engine.errors import ConfigError
from engine.model import ModelConfig, build_model


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny(**overrides) -> ProfilerConfig:
    values = dict(batch_size=2, image_size=32, repeats=1, warmup=0, device="cpu")
    values.update(overrides)
    return ProfilerConfig(**values)


@pytest.fixture(scope="module")
def measured():
    torch.set_num_threads(1)
    calls = []
    profile = profile_model(tiny(), on_unit=lambda index, total, layer: calls.append((index, total, layer.name)))
    return profile, calls


def test_every_unit_in_order_with_positive_times_and_progress(measured):
    profile, calls = measured
    expected = [name for name, _ in build_model(ModelConfig()).partitionable_layers()]
    assert list(profile.names) == expected and expected[-1] == "head"
    assert all(layer.forward_ms > 0 and layer.backward_ms > 0 for layer in profile.layers)
    assert calls == [(i, len(expected), name) for i, name in enumerate(expected)]
    s = profile.settings
    assert (s.model, s.backbone, s.batch_size, s.image_size, s.channels, s.optimizer, s.dtype, s.repeats) == (
        "lite-srl", "resnet18", 2, 32, 3, "sgd", "float32", 1)
    assert s.device.startswith("cpu") and s.torch_version == torch.__version__


def test_parameter_and_gradient_bytes_are_the_real_tensors(measured):
    profile, _ = measured
    model = build_model(ModelConfig())
    for layer, (name, unit) in zip(profile.layers, model.partitionable_layers()):
        params = sum(p.numel() for p in unit.parameters())
        buffers = sum(b.numel() * b.element_size() for b in unit.buffers())  # BN running stats + int64 counter
        assert layer.grad_bytes == params * 4, name
        assert layer.param_bytes == params * 4 + buffers, name
    assert sum(layer.grad_bytes for layer in profile.layers) == sum(p.numel() for p in model.parameters()) * 4


def test_optimizer_state_bytes_per_optimizer():
    sgd = measure_memory(tiny(optimizer="sgd"))
    plain = measure_memory(tiny(optimizer="sgd-nomomentum"))
    adam = measure_memory(tiny(optimizer="adam"))
    model = build_model(ModelConfig())
    for unit, still, moments, (name, module) in zip(sgd, plain, adam, model.partitionable_layers()):
        tensors = len(list(module.parameters()))
        assert unit.optimizer_bytes == unit.grad_bytes, name  # one momentum buffer per weight
        assert still.optimizer_bytes == 0, name
        # exp_avg and exp_avg_sq per weight, plus Adam's scalar step counter per tensor
        assert 2 * unit.grad_bytes <= moments.optimizer_bytes <= 2 * unit.grad_bytes + 8 * tensors, name


def test_output_bytes_and_shapes_are_the_real_outputs(measured):
    profile, _ = measured
    model = build_model(ModelConfig()).train()
    x = torch.randn(4, 3, 32, 32)  # 2 x batch 2: both views
    for layer, (name, unit) in zip(profile.layers, model.partitionable_layers()):
        x = unit(x)
        assert layer.output_bytes == x.numel() * x.element_size(), name
        assert layer.shape == tuple(x.shape), name
    assert profile.layers[-1].shape == () and profile.layers[-1].output_bytes == 4  # the scalar loss


def test_activation_bytes_add_up_to_what_autograd_saves_for_the_whole_model(measured):
    profile, _ = measured
    model = build_model(ModelConfig()).train()
    weights = {t.untyped_storage().data_ptr() for t in list(model.parameters()) + list(model.buffers())}
    storages: dict[int, int] = {}
    kept = []

    def pack(tensor):
        kept.append(tensor)
        ptr = tensor.untyped_storage().data_ptr()
        if ptr not in weights:
            storages[ptr] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(torch.randn(4, 3, 32, 32))
    assert sum(layer.activation_bytes for layer in profile.layers) == sum(storages.values())


def test_activation_bytes_positive_for_convolutions_and_linear_in_batch():
    b2, b4, b6 = (measure_memory(tiny(batch_size=b, image_size=64), device="meta") for b in (2, 4, 6))
    for a, b, c in zip(b2, b4, b6):
        if a.kind in ("conv", "block"):
            assert a.activation_bytes > 0, a.name
            assert b.activation_bytes / a.activation_bytes == pytest.approx(2.0, rel=0.05), a.name
        # exactly affine in the batch: BN's per-channel mean and inverse std are the only fixed part
        assert c.activation_bytes - b.activation_bytes == b.activation_bytes - a.activation_bytes, a.name
        assert b.output_bytes == 2 * a.output_bytes or a.name == "head", a.name


def test_meta_device_counts_the_same_bytes_as_the_cpu(measured):
    profile, _ = measured
    meta = measure_memory(tiny(), device="meta")
    fields = ("param_bytes", "grad_bytes", "optimizer_bytes", "activation_bytes", "output_bytes")
    for layer, unit in zip(profile.layers, meta):
        assert tuple(getattr(layer, f) for f in fields) == tuple(getattr(unit, f) for f in fields), unit.name


def test_half_precision_halves_the_weights_and_activations():
    full = measure_memory(tiny(), device="meta")
    half = measure_memory(tiny(dtype="float16"), device="meta")
    for a, b in zip(full, half):
        assert b.grad_bytes * 2 == a.grad_bytes, a.name
        assert b.output_bytes * 2 == a.output_bytes or a.name == "head", a.name


def test_sar_and_simsiam_variants_profile():
    units = measure_memory(tiny(model=ModelConfig(variant="simsiam", in_channels=1)), device="meta")
    assert units[0].param_bytes == 64 * 1 * 7 * 7 * 4  # a one-channel stem
    assert units[0].input_numel == 4 * 1 * 32 * 32
    assert [u.name for u in units] == [n for n, _ in build_model(ModelConfig(variant="simsiam")).partitionable_layers()]


def test_round_trip_and_search(measured, tmp_path):
    profile, _ = measured
    loaded = load_profile(save_profile(profile, tmp_path / "profile.json"))
    assert loaded == profile
    model = CostModel(loaded, Network(bandwidth=125e6, latency_ms=0.2))
    result = search(model, identical_nodes(3, 10**9), 3)
    assert result.best.fits and len(result.best.cuts) == 2


def test_process_clock_profiles_the_cpu():
    profile = profile_model(tiny(clock="process", model=ModelConfig(stem="compact")))
    assert "process clock" in profile.settings.device
    assert profile.total_compute_ms > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image_size": 8}, "image size must be an integer of at least 32 px"),
        ({"batch_size": 0}, "batch size must be a positive integer"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
        ({"dtype": "bfloat16"}, "unknown dtype 'bfloat16'"),
        ({"repeats": 0}, "repeats must be at least 1"),
        ({"clock": "tsc"}, "unknown clock 'tsc'"),
    ],
)
def test_bad_settings_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**overrides)


def test_devices_without_a_clock_or_a_gpu_are_refused():
    with pytest.raises(ConfigError, match="meta device has no clock"):
        profile_model(tiny(device="meta"))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            profile_model(tiny(device="cuda"))
