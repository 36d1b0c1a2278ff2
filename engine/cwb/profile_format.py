"""The CWB profile: per-layer time and memory of one training step, as a versioned JSON file.

Written by the torch profiler (``engine/cwb/profiler.py``), read by the pure partition search.
Example (version 1)::

    {
      "format": "litesrl-profile",
      "version": 1,
      "settings": {"model": "lite-srl", "backbone": "resnet18", "batch_size": 64,
                   "image_size": 224, "channels": 3, "optimizer": "sgd", "dtype": "float32",
                   "device": "Jetson TX2 (cuda:0)", "torch_version": "2.1.0", "host": "tx2-1",
                   "date": "2024-05-01T10:00:00+00:00", "repeats": 10},
      "layers": [
        {"name": "stem", "kind": "conv", "shape": [64, 64, 56, 56],
         "forward_ms": 31.2, "backward_ms": 60.1, "param_bytes": 37888, "grad_bytes": 37888,
         "optimizer_bytes": 37888, "activation_bytes": 102760448, "output_bytes": 51380224,
         "paper_bytes": 566288384},
        ...
      ],
      "data_ms": 412.0
    }

Layer fields: ``forward_ms`` / ``backward_ms`` are the measured times of the layer for one
mini-batch (both views); ``param_bytes`` the weights, ``grad_bytes`` their gradients,
``optimizer_bytes`` the optimizer state (SGD with momentum = 1x params, Adam = 2x);
``activation_bytes`` what autograd keeps for backward; ``output_bytes`` the tensor sent forward
when a cut follows this layer (its gradient, sent back, has the same size). ``kind`` and
``shape`` (the output shape) are optional, for people. ``paper_bytes`` (optional; profiles
written before it lack it) is the same layer counted the paper's way (section 5.1): the input
and output of every layer call inside it plus weights, gradients and optimizer state; CWB's
``--memory-accounting paper`` uses it (``engine.cwb.cost``).

``data_ms`` (top level, optional, 0.0 when absent or unmeasured) is the mean time to read,
decode and augment one mini-batch (both views) on the profiled device: work only a stage-1 node
does, so the cost model adds it to stage 1's compute.

Each entry ends at a *partitionable point* (the paper's p1..p28): a cut may follow any entry but
the last, i.e. cuts are allowed after layers 0..q-2. The last entry of a Lite-SRL profile is the
predictor + loss "head"; because partitions are contiguous and non-empty, it always lands in the
last partition, so the format needs no flag for it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from engine.errors import ProfileError
from engine.io import atomic_write_json

FORMAT = "litesrl-profile"
VERSION = 1


def _check_number(owner: str, key: str, value: Any, *, integer: bool) -> None:
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        want = "an integer" if integer else "a number"
        raise ProfileError(f"{owner}: {key!r} must be {want}, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ProfileError(f"{owner}: {key!r} must be a finite number >= 0, got {value!r}")


@dataclass(frozen=True)
class LayerProfile:
    """One partitionable layer (block) of the model, measured for one mini-batch."""

    name: str
    """Unique layer name; cuts are reported by the name of the layer they follow."""
    forward_ms: float
    """Forward time of this layer on the profiled board, milliseconds."""
    backward_ms: float
    """Backward time of this layer on the profiled board, milliseconds."""
    param_bytes: int
    """Bytes of the layer's weights."""
    grad_bytes: int
    """Bytes of the weights' gradients."""
    optimizer_bytes: int
    """Bytes of optimizer state (SGD momentum = 1x params, Adam = 2x)."""
    activation_bytes: int
    """Bytes autograd keeps from the forward pass until backward."""
    output_bytes: int
    """Bytes of the output sent forward at a cut after this layer (the gradient back is the same size)."""
    kind: str | None = None
    """Optional layer kind (``conv``, ``block``, ``head``...), for people."""
    shape: tuple[int, ...] | None = None
    """Optional output shape, for people."""
    paper_bytes: int | None = None
    """The layer's memory as the paper counts it (5.1): every layer call's input and output + weights,
    gradients and optimizer state; None in profiles written before this field."""

    def __post_init__(self) -> None:
        owner = f"layer {self.name!r}"
        if self.paper_bytes is not None:
            _check_number(owner, "paper_bytes", self.paper_bytes, integer=True)
        if not isinstance(self.name, str) or not self.name:
            raise ProfileError(f"layer name must be a non-empty string, got {self.name!r}")
        for key in ("forward_ms", "backward_ms"):
            _check_number(owner, key, getattr(self, key), integer=False)
        for key in ("param_bytes", "grad_bytes", "optimizer_bytes", "activation_bytes", "output_bytes"):
            _check_number(owner, key, getattr(self, key), integer=True)
        if self.kind is not None and not isinstance(self.kind, str):
            raise ProfileError(f"{owner}: 'kind' must be a string, got {self.kind!r}")
        if self.shape is not None:
            if not isinstance(self.shape, (list, tuple)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in self.shape
            ):
                raise ProfileError(f"{owner}: 'shape' must be a list of non-negative integers, got {self.shape!r}")
            object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def compute_ms(self) -> float:
        """Forward + backward time on the profiled board."""
        return self.forward_ms + self.backward_ms

    @property
    def state_bytes(self) -> int:
        """Memory the layer holds during a step: weights, gradients, optimizer state, saved activations."""
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes + self.activation_bytes


@dataclass(frozen=True)
class ProfileSettings:
    """What the profile was measured with; a profile is only valid for these settings."""

    model: str
    """Model variant, e.g. ``lite-srl``."""
    backbone: str
    """Encoder backbone, e.g. ``resnet18``."""
    batch_size: int
    """Mini-batch size (the paper used 64)."""
    image_size: int
    """Input height = width in pixels."""
    channels: int
    """Input channels (3 for optical, 1 for SAR)."""
    optimizer: str
    """Optimizer name (``sgd`` with momentum in the paper, or ``adam``)."""
    dtype: str
    """Tensor dtype, e.g. ``float32``."""
    device: str
    """Board / device the times were measured on."""
    torch_version: str
    """``torch.__version__`` at measurement time."""
    host: str
    """Host name of the machine that measured."""
    date: str
    """ISO 8601 time of the measurement."""
    repeats: int
    """Timed repetitions averaged per layer."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if item.type == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ProfileError(f"settings: {item.name!r} must be a positive integer, got {value!r}")
            elif not isinstance(value, str):
                raise ProfileError(f"settings: {item.name!r} must be a string, got {value!r}")


@dataclass(frozen=True)
class Profile:
    """Ordered layers of one model with the settings they were measured with."""

    settings: ProfileSettings
    """Measurement settings."""
    layers: tuple[LayerProfile, ...]
    """Layers in forward order; cuts may follow layers 0..q-2."""
    data_ms: float = 0.0
    """Mean ms to read, decode and augment one mini-batch (both views) on the profiled device; 0.0 unmeasured."""

    def __post_init__(self) -> None:
        _check_number("profile", "data_ms", self.data_ms, integer=False)
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ProfileError("profile has no layers")
        seen: set[str] = set()
        for layer in self.layers:
            if layer.name in seen:
                raise ProfileError(f"layer name {layer.name!r} appears twice")
            seen.add(layer.name)

    @property
    def names(self) -> tuple[str, ...]:
        """Layer names in order."""
        return tuple(layer.name for layer in self.layers)

    @property
    def total_compute_ms(self) -> float:
        """Forward + backward time of the whole model on the profiled board (one mini-batch)."""
        return sum(layer.compute_ms for layer in self.layers)

    @property
    def total_state_bytes(self) -> int:
        """Memory of the whole model's training state on one board (no cut buffers)."""
        return sum(layer.state_bytes for layer in self.layers)

    @property
    def has_paper_bytes(self) -> bool:
        """True when every layer carries the paper's memory count."""
        return all(layer.paper_bytes is not None for layer in self.layers)

    @property
    def total_paper_bytes(self) -> int | None:
        """The whole model counted the paper's way (7599.7 MB for ResNet-18 in the paper), None when not recorded."""
        counts = [layer.paper_bytes for layer in self.layers if layer.paper_bytes is not None]
        return sum(counts) if self.has_paper_bytes else None

    def scaled(self, time_factor: float, *, device: str | None = None) -> Profile:
        """The same profile with every time multiplied by ``time_factor`` (e.g. 2.0 for a board half as fast).

        Memory does not change with the board; ``data_ms`` scales too. ``device`` relabels the settings.
        """
        if not (isinstance(time_factor, (int, float)) and time_factor > 0 and math.isfinite(time_factor)):
            raise ProfileError(f"time factor must be a finite number > 0, got {time_factor!r}")
        layers = tuple(
            replace(layer, forward_ms=layer.forward_ms * time_factor, backward_ms=layer.backward_ms * time_factor)
            for layer in self.layers
        )
        settings = self.settings if device is None else replace(self.settings, device=device)
        return Profile(settings=settings, layers=layers, data_ms=self.data_ms * time_factor)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of this profile (format, version, settings, layers)."""
        layers = []
        for layer in self.layers:
            entry = {k: v for k, v in asdict(layer).items() if v is not None}
            if "shape" in entry:
                entry["shape"] = list(entry["shape"])
            layers.append(entry)
        return {"format": FORMAT, "version": VERSION, "settings": asdict(self.settings), "layers": layers,
                "data_ms": self.data_ms}

    @classmethod
    def from_dict(cls, data: Any) -> Profile:
        """Validate a JSON document into a Profile; raises ProfileError saying what is wrong."""
        if not isinstance(data, dict):
            raise ProfileError("top level must be a JSON object")
        if data.get("format") != FORMAT:
            raise ProfileError(f"'format' must be {FORMAT!r}, got {data.get('format')!r}")
        if "version" not in data:
            raise ProfileError("missing 'version'")
        if data["version"] != VERSION:
            raise ProfileError(f"unknown version {data['version']!r} (this build reads version {VERSION})")
        settings = _entry(data.get("settings"), "settings", [f.name for f in fields(ProfileSettings)], ())
        layers = data.get("layers")
        if not isinstance(layers, list):
            raise ProfileError("missing 'layers' (a list of layer objects)")
        if not layers:
            raise ProfileError("'layers' is empty")
        optional = ("kind", "shape", "paper_bytes")
        required = [f.name for f in fields(LayerProfile) if f.name not in optional]
        parsed = []
        for index, entry in enumerate(layers):
            label = f"layers[{index}]"
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                label += f" ({entry['name']})"
            values = _entry(entry, label, required, optional)
            try:
                parsed.append(LayerProfile(**values))
            except ProfileError as exc:
                raise ProfileError(f"{label}: {exc}") from None
        data_ms = data.get("data_ms", 0.0)
        _check_number("profile", "data_ms", data_ms, integer=False)
        return cls(settings=ProfileSettings(**settings), layers=tuple(parsed), data_ms=float(data_ms))


def _entry(entry: Any, label: str, required: list[str], optional: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ProfileError(f"{label} must be a JSON object")
    missing = [key for key in required if key not in entry]
    if missing:
        raise ProfileError(f"{label}: missing field {missing[0]!r}")
    unknown = sorted(set(entry) - set(required) - set(optional))
    if unknown:
        raise ProfileError(f"{label}: unknown field {unknown[0]!r}")
    return dict(entry)


def load_profile(path: str | Path) -> Profile:
    """Read and validate a profile file; every problem is a ProfileError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: profile not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read profile ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProfileError(f"{path}: not JSON ({exc})") from None
    try:
        return Profile.from_dict(data)
    except ProfileError as exc:
        raise ProfileError(f"{path}: {exc}") from None


def save_profile(profile: Profile, path: str | Path) -> Path:
    """Write ``profile`` atomically as indented JSON; returns the path."""
    return atomic_write_json(path, profile.to_dict())
