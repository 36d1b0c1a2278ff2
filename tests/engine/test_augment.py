"""View pipelines: shapes, modality-specific operations, exact rotations, speckle statistics."""

import torch
from torchvision.transforms import v2

from engine.augment import AugmentConfig, build_view_transform
from engine.augment.ops import GammaSpeckle, RandomRot90


def _ops(transform):
    found = []
    for t in transform.transforms:
        found.append(type(t).__name__)
        if isinstance(t, v2.RandomApply):
            found.extend(type(inner).__name__ for inner in t.transforms)
    return found


def test_optical_views_are_normalised_floats_of_the_requested_size():
    transform = build_view_transform("optical", AugmentConfig(size=24), torch.full((3,), 0.5), torch.full((3,), 0.25))
    view = transform(torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8))
    assert view.shape == (3, 24, 24) and view.dtype == torch.float32
    assert {"RandomResizedCrop", "ColorJitter", "RandomGrayscale", "GaussianBlur", "RandomRot90"} <= set(_ops(transform))


def test_sar_pipeline_has_speckle_and_no_colour_operations():
    transform = build_view_transform("sar", AugmentConfig(size=24), torch.tensor([0.5]), torch.tensor([0.25]))
    ops = _ops(transform)
    assert "GammaSpeckle" in ops and "RandomGrayscale" not in ops
    jitter = next(t for a in transform.transforms if isinstance(a, v2.RandomApply)
                  for t in a.transforms if isinstance(t, v2.ColorJitter))
    assert jitter.hue is None and jitter.saturation is None
    view = transform(torch.randint(0, 256, (1, 40, 40), dtype=torch.uint8))
    assert view.shape == (1, 24, 24)


def test_rot90_is_exact_and_uses_all_four_orientations():
    image = torch.arange(16.0).reshape(1, 4, 4)
    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = RandomRot90()(image)
        matches = [k for k in range(4) if torch.equal(out, torch.rot90(image, k, dims=(-2, -1)))]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_gamma_speckle_has_unit_mean_intensity_and_variance_one_over_looks():
    torch.manual_seed(0)
    flat = torch.full((1, 256, 256), 0.25)
    out = GammaSpeckle(looks=(4.0, 4.0))(flat)
    intensity = (out / 0.25) ** 2
    assert abs(intensity.mean().item() - 1.0) < 0.02
    assert abs(intensity.var().item() - 0.25) < 0.02


def test_any_angle_rotation_then_inscribed_crop_leaves_no_empty_corner():
    from engine.augment.ops import InscribedCrop

    white = torch.full((1, 64, 64), 255, dtype=torch.uint8)
    rotate = v2.Compose([v2.RandomRotation(180.0, interpolation=v2.InterpolationMode.BILINEAR), InscribedCrop()])
    for seed in range(20):
        torch.manual_seed(seed)
        out = rotate(white)
        assert out.shape == (1, 43, 43)  # floor(64 / sqrt 2) - 2
        assert out.min() == 255  # the rotation's zero fill never reaches the crop
    transform = build_view_transform("sar", AugmentConfig(size=24, rotation="any"), torch.tensor([0.5]), torch.tensor([0.25]))
    assert {"RandomRotation", "InscribedCrop"} <= set(_ops(transform))
    assert transform(white).shape == (1, 24, 24)


def test_power_law_keeps_black_and_white_and_draws_exponents_log_uniformly():
    from engine.augment.ops import RandomPowerLaw

    ramp = torch.linspace(0.0, 1.0, 11).reshape(1, 1, 11)
    transform = RandomPowerLaw((0.5, 2.0))
    exponents = []
    for seed in range(200):
        torch.manual_seed(seed)
        out = transform(ramp)
        assert out[..., 0] == 0.0 and out[..., -1] == 1.0
        assert torch.all(out[..., 1:] >= out[..., :-1])  # a display mapping never reorders grey levels
        torch.manual_seed(seed)
        exponents.append(transform.make_params([ramp])["exponent"])
        assert torch.allclose(out, ramp ** exponents[-1])
    assert 0.5 <= min(exponents) and max(exponents) <= 2.0
    brighter = sum(e < 1.0 for e in exponents) / len(exponents)
    assert 0.4 < brighter < 0.6  # log-uniform on [1/2, 2]: as often brighter as darker


def test_strong_sar_radiometry_adds_the_power_law_and_harsher_speckle():
    mild = build_view_transform("sar", AugmentConfig(size=24), torch.tensor([0.5]), torch.tensor([0.25]))
    strong = build_view_transform("sar", AugmentConfig(size=24, sar_radiometry="strong"), torch.tensor([0.5]),
                                  torch.tensor([0.25]))
    assert "RandomPowerLaw" not in _ops(mild) and "RandomPowerLaw" in _ops(strong)

    def speckle(transform):
        return next(t for a in transform.transforms if isinstance(a, v2.RandomApply)
                    for t in a.transforms if isinstance(t, GammaSpeckle))

    (strong_low, strong_high), (mild_low, mild_high) = speckle(strong).looks, speckle(mild).looks
    assert strong_low < mild_low and strong_high < mild_high  # fewer looks: stronger speckle
    assert strong(torch.randint(0, 256, (1, 40, 40), dtype=torch.uint8)).shape == (1, 24, 24)


def test_an_unknown_radiometry_or_rotation_is_a_config_error():
    import pytest

    from engine.errors import ConfigError

    with pytest.raises(ConfigError, match="SAR radiometry"):
        AugmentConfig(sar_radiometry="harsh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="rotation"):
        AugmentConfig(rotation="rot45")  # type: ignore[arg-type]
