"""Synthetic CWB profiles on plain numbers, for the search tests, the CLI tests and the benchmark."""

from __future__ import annotations

import random

from engine.cwb.profile_format import LayerProfile, Profile, ProfileSettings

MB = 10**6


def settings(**overrides) -> ProfileSettings:
    """Measurement settings like the paper's (batch 64, SGD with momentum, float32 on a TX2)."""
    values = dict(
        model="lite-srl",
        backbone="resnet18",
        batch_size=64,
        image_size=224,
        channels=3,
        optimizer="sgd",
        dtype="float32",
        device="Jetson TX2 (synthetic)",
        torch_version="2.1.0",
        host="test",
        date="2024-05-01T10:00:00+00:00",
        repeats=3,
    )
    values.update(overrides)
    return ProfileSettings(**values)


def layer(name: str, compute_ms: float, state_mb: float, out_mb: float, *, kind: str | None = None) -> LayerProfile:
    """A layer whose forward is a third of ``compute_ms``; ``state_mb`` is split like a conv block."""
    state = int(state_mb * MB)
    params = state // 10
    return LayerProfile(
        name=name,
        forward_ms=compute_ms / 3,
        backward_ms=compute_ms * 2 / 3,
        param_bytes=params,
        grad_bytes=params,
        optimizer_bytes=params,
        activation_bytes=state - 3 * params,
        output_bytes=int(out_mb * MB),
        kind=kind,
    )


def random_profile(layers: int, seed: int, *, max_ms: float = 100.0, max_state_mb: float = 800.0) -> Profile:
    """``layers`` random layers (seeded); the last one is a small "head" as in Lite-SRL."""
    rng = random.Random(seed)
    entries = [
        layer(f"L{i}", rng.uniform(1.0, max_ms), rng.uniform(10.0, max_state_mb), rng.uniform(1.0, 60.0))
        for i in range(layers - 1)
    ]
    entries.append(layer("head", rng.uniform(1.0, 10.0), 20.0, 0.0, kind="head"))
    return Profile(settings=settings(), layers=tuple(entries))


def paper_like_profile() -> Profile:
    """28 partitionable layers shaped like Lite-SRL/ResNet-18 at batch 64: ~7.6 GB, ~3 s per step on a TX2.

    Early layers carry big activations and little weight, late layers the reverse, so the
    memory balancing of Algorithm 2 step 1 matters, as in the paper's Figure 13.
    """
    spec = [
        ("conv1", 140, 820, 205), ("bn1", 60, 410, 205), ("relu", 30, 205, 205), ("maxpool", 40, 260, 51),
        ("layer1.0.conv", 110, 420, 51), ("layer1.0", 100, 400, 51), ("layer1.1.conv", 110, 420, 51),
        ("layer1.1", 100, 400, 51), ("layer2.0.conv", 120, 260, 26), ("layer2.0", 110, 250, 26),
        ("layer2.1.conv", 120, 240, 26), ("layer2.1", 110, 230, 26), ("layer3.0.conv", 130, 170, 13),
        ("layer3.0", 120, 160, 13), ("layer3.1.conv", 130, 160, 13), ("layer3.1", 120, 150, 13),
        ("layer4.0.conv", 140, 190, 6.5), ("layer4.0", 130, 200, 6.5), ("layer4.1.conv", 140, 230, 6.5),
        ("layer4.1", 130, 230, 6.5), ("avgpool", 20, 10, 0.3), ("proj.fc1", 40, 60, 0.5),
        ("proj.bn1", 20, 20, 0.5), ("proj.fc2", 40, 60, 0.5), ("proj.bn2", 20, 20, 0.5),
        ("pred.fc1", 30, 40, 0.1), ("pred.fc2", 30, 40, 0.5), ("head", 80, 85, 0.0),
    ]
    entries = [layer(name, ms, state, out, kind="head" if name == "head" else None) for name, ms, state, out in spec]
    return Profile(settings=settings(device="Jetson TX2 (paper-like)"), layers=tuple(entries))
