"""DHP wire format: a fixed prefix, a small JSON header and raw tensor payloads, with limits checked first.

A frame on the wire is::

    prefix  (20 bytes, network byte order)
        magic        4s   b"LSRL"
        version      B    PROTOCOL_VERSION
        type         B    a MessageType
        reserved     H    0 (room for flags without a version bump)
        header_len   I    bytes of the JSON header that follows
        payload_len  Q    bytes of tensor data that follow the header
    header  (header_len bytes, UTF-8 JSON)
        {"meta": {...caller's dict...}, "tensors": [{"dtype": "float32", "shape": [..], "nbytes": n}, ...]}
    payload (payload_len bytes)
        the tensors' raw bytes, back to back, in the order listed, little-endian (every supported host
        - x86-64 and the Jetsons' aarch64 - is little-endian, so bytes go out as they lie in memory).

Both lengths are checked against :class:`FrameLimits` as soon as the prefix is read, before any buffer
for the header or payload is allocated; the header is then checked against the payload length, so a
frame can never make the receiver allocate more than it declared and the limits allow.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nodes.errors import ProtocolError

MAGIC = b"LSRL"
PROTOCOL_VERSION = 2
PREFIX = struct.Struct("!4sBBHIQ")
MiB = 1 << 20
GiB = 1 << 30
MAX_NDIM = 32
MAX_DIM = 2**31 - 1
"""Largest size of one tensor dimension (an empty tensor may not declare 2**70 rows)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of a header's JSON (DHP headers are 4 levels deep)."""

# Element size of every dtype the wire carries; names are torch's (``str(torch.float32)[6:]``).
DTYPE_SIZES: Mapping[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint8": 1,
    "bool": 1,
}


class MessageType(enum.IntEnum):
    """What a frame carries. The header keys listed are the ones this package reads or writes;
    the node agent and coordinator define the rest of each header."""

    HELLO = 1
    """client -> server, first frame of a connection: ``{"nonce": hex}`` (see :mod:`nodes.wire.auth`)."""
    AUTH_CHALLENGE = 2
    """server -> client: ``{"nonce": hex}``, the server's fresh nonce."""
    AUTH_RESPONSE = 3
    """client -> server: ``{"proof": hex}``, HMAC of both nonces, proving the client holds the secret."""
    AUTH_OK = 4
    """server -> client: ``{"proof": hex}``, the server's own HMAC, proving it holds the secret too."""
    ASSIGN_STAGE = 5
    """coordinator -> node: the partition (layer range) a node trains, its chain and neighbours
    (paper section 3.3: CWB partition points assigned to DHP nodes); tensors may carry initial weights."""
    FORWARD = 6
    """stage i -> stage i+1: output feature (activation) of a partition for one micro-batch."""
    BACKWARD = 7
    """stage i+1 -> stage i: gradient of the loss w.r.t. that activation."""
    PARAMETERS = 8
    """node <-> coordinator: a partition's parameters, exchanged for averaging across chains
    (paper section 3.3.2: parameters aggregated after a number of iterations)."""
    TELEMETRY = 9
    """node -> console: a sample of power, memory, utilisation and temperatures."""
    TIMING = 10
    """node -> coordinator: measured per-layer forward/backward and transfer times (the inputs of CWB)."""
    ERROR = 11
    """either way: ``{"reason": str}``; sent before closing a connection on purpose."""
    SHUTDOWN = 12
    """coordinator -> node: stop the current job and close the connection."""
    PING = 13
    """either way: liveness probe; the peer answers PONG with the same header."""
    PONG = 14
    """either way: answer to PING."""


@dataclass(frozen=True)
class FrameLimits:
    """Upper bounds a receiver enforces on each frame before allocating anything for it."""

    max_header_bytes: int = 1 * MiB
    """Largest JSON header accepted (meta dict plus tensor descriptions)."""
    max_payload_bytes: int = 1 * GiB
    """Largest sum of tensor bytes accepted in one frame."""

    def __post_init__(self) -> None:
        if self.max_header_bytes < 64:
            raise ProtocolError(f"max_header_bytes must be at least 64, got {self.max_header_bytes}")
        if self.max_payload_bytes < 0:
            raise ProtocolError(f"max_payload_bytes must be >= 0, got {self.max_payload_bytes}")


@dataclass(frozen=True)
class Prefix:
    """The decoded fixed-size start of a frame."""

    type: MessageType
    header_len: int
    payload_len: int


@dataclass(frozen=True)
class TensorSpec:
    """How one tensor of the payload is laid out: its dtype name, shape and byte length."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int


def encode_prefix(msg_type: MessageType, header_len: int, payload_len: int) -> bytes:
    """Pack the 20-byte prefix of a frame."""
    return PREFIX.pack(MAGIC, PROTOCOL_VERSION, int(msg_type), 0, header_len, payload_len)


def decode_prefix(data: bytes | bytearray | memoryview, limits: FrameLimits) -> Prefix:
    """Unpack and validate a prefix; raise :class:`ProtocolError` on bad magic, version, type or size."""
    if len(data) != PREFIX.size:
        raise ProtocolError(f"frame prefix is {len(data)} bytes, expected {PREFIX.size}")
    magic, version, type_code, _reserved, header_len, payload_len = PREFIX.unpack(data)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {bytes(magic)!r}, expected {MAGIC!r}: not a litesrl peer")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})")
    try:
        msg_type = MessageType(type_code)
    except ValueError:
        raise ProtocolError(f"unknown message type {type_code}") from None
    if header_len > limits.max_header_bytes:
        raise ProtocolError(f"header of {header_len} bytes exceeds the limit of {limits.max_header_bytes}")
    if payload_len > limits.max_payload_bytes:
        raise ProtocolError(f"payload of {payload_len} bytes exceeds the limit of {limits.max_payload_bytes}")
    return Prefix(msg_type, header_len, payload_len)


def encode_header(meta: Mapping[str, Any], specs: Sequence[TensorSpec]) -> bytes:
    """Serialise the caller's dict and the tensor descriptions as compact UTF-8 JSON."""
    body = {
        "meta": dict(meta),
        "tensors": [{"dtype": s.dtype, "shape": list(s.shape), "nbytes": s.nbytes} for s in specs],
    }
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"header is not JSON-serialisable: {exc}") from None


def decode_header(data: bytes | bytearray | memoryview, payload_len: int) -> tuple[dict[str, Any], list[TensorSpec]]:
    """Parse a header and check its tensor descriptions add up to exactly ``payload_len`` bytes."""
    try:
        body = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"header is not valid UTF-8 JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(f"header JSON is nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _depth(body, MAX_JSON_DEPTH + 1) > MAX_JSON_DEPTH:
        raise ProtocolError(f"header JSON is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(body, dict) or set(body) != {"meta", "tensors"}:
        raise ProtocolError("header must be an object with exactly the keys 'meta' and 'tensors'")
    meta, raw_specs = body["meta"], body["tensors"]
    if not isinstance(meta, dict):
        raise ProtocolError(f"header 'meta' must be an object, got {type(meta).__name__}")
    if not isinstance(raw_specs, list):
        raise ProtocolError(f"header 'tensors' must be a list, got {type(raw_specs).__name__}")
    specs = [_parse_spec(i, raw) for i, raw in enumerate(raw_specs)]
    total = sum(s.nbytes for s in specs)
    if total != payload_len:
        raise ProtocolError(f"tensors describe {total} bytes but the prefix declares a payload of {payload_len}")
    return meta, specs


def spec_for(dtype: str, shape: Sequence[int]) -> TensorSpec:
    """The spec of a contiguous tensor of ``dtype`` and ``shape``; raise if the wire cannot carry the dtype."""
    if dtype not in DTYPE_SIZES:
        raise ProtocolError(f"dtype {dtype} cannot be sent; supported: {', '.join(DTYPE_SIZES)}")
    return TensorSpec(dtype, tuple(shape), math.prod(shape) * DTYPE_SIZES[dtype])


def _parse_spec(index: int, raw: Any) -> TensorSpec:
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "nbytes"}:
        raise ProtocolError(f"tensor {index}: description must have exactly 'dtype', 'shape' and 'nbytes'")
    dtype, shape, nbytes = raw["dtype"], raw["shape"], raw["nbytes"]
    if dtype not in DTYPE_SIZES:
        raise ProtocolError(f"tensor {index}: unknown dtype {dtype!r}")
    if (
        not isinstance(shape, list)
        or len(shape) > MAX_NDIM
        or not all(type(d) is int and 0 <= d <= MAX_DIM for d in shape)
    ):
        raise ProtocolError(f"tensor {index}: shape must be a list of at most {MAX_NDIM} integers in 0..{MAX_DIM}")
    if type(nbytes) is not int or nbytes != math.prod(shape) * DTYPE_SIZES[dtype]:
        raise ProtocolError(f"tensor {index}: nbytes {nbytes!r} does not match {dtype} of shape {shape}")
    return TensorSpec(dtype, tuple(shape), nbytes)


def _depth(value: Any, cap: int) -> int:
    """Nesting depth of a parsed JSON value, counted no further than ``cap``."""
    if cap <= 0 or not isinstance(value, (dict, list)):
        return 0
    items = value.values() if isinstance(value, dict) else value
    return 1 + max((_depth(item, cap - 1) for item in items), default=0)
