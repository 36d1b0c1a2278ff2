"""Transforms torchvision lacks: exact 90-degree rotations, multiplicative Gamma speckle and a random power law."""

from __future__ import annotations

import math
from typing import Any

import torch
from torchvision.transforms import v2


class RandomRot90(v2.Transform):
    """Rotate by 0, 90, 180 or 270 degrees, chosen uniformly; exact (no interpolation).

    Overhead scenes have no "up", so all four orientations are equally valid views.
    """

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"k": int(torch.randint(0, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["k"] == 0:
            return inpt
        return torch.rot90(inpt, params["k"], dims=(-2, -1))


class GammaSpeckle(v2.Transform):
    """Multiplicative speckle: intensity I' = I * G, G ~ Gamma(L, 1/L) (mean 1, variance 1/L).

    Works on float images in [0, 1] read as amplitude, so the amplitude is multiplied by sqrt(G).
    The number of looks L is drawn per image from ``looks`` (fewer looks = stronger speckle): a SAR
    scene re-imaged with independent speckle is the same scene, which is the invariance we want.
    """

    def __init__(self, looks: tuple[float, float] = (2.0, 10.0)) -> None:
        super().__init__()
        self.looks = looks

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        low, high = self.looks
        return {"looks": float(torch.empty(()).uniform_(low, high))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point():
            raise TypeError("GammaSpeckle expects a float image tensor in [0, 1]")
        looks = params["looks"]
        gamma = torch.distributions.Gamma(torch.tensor(looks), torch.tensor(looks))
        noise = gamma.sample(inpt.shape[-2:]).sqrt()
        return (inpt * noise).clamp_(0.0, 1.0)


class InscribedCrop(v2.Transform):
    """Centre square of side floor(min(H, W) / sqrt 2) - 2: after any rotation it holds no empty corner
    (the 2-pixel margin keeps bilinear interpolation from blending the rotation's fill into it)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        side = max(1, int(min(inpt.shape[-2:]) / 2**0.5) - 2)
        return v2.functional.center_crop(inpt, [side, side])


class RandomPowerLaw(v2.Transform):
    """I' = I ** g with g drawn log-uniformly from ``exponents``, on float images in [0, 1].

    A SAR magnitude reaches 8 bit through a display mapping (a power or log law, a clip) that differs
    between products and is rarely documented; a random exponent makes the encoder match two views by
    the target's shape, not by the grey levels of the chip's clutter.
    """

    def __init__(self, exponents: tuple[float, float]) -> None:
        super().__init__()
        low, high = exponents
        if not 0 < low <= high:
            raise ValueError(f"power-law exponents must satisfy 0 < low <= high, got {exponents}")
        self.log_low, self.log_high = math.log(low), math.log(high)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"exponent": math.exp(float(torch.empty(()).uniform_(self.log_low, self.log_high)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor) or not inpt.is_floating_point():
            raise TypeError("RandomPowerLaw expects a float image tensor in [0, 1]")
        return inpt.clamp(0.0, 1.0).pow(params["exponent"])
