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
    """What a frame carries. Handshake frames are this package's (:mod:`nodes.wire.auth`); every later frame
    carries one DHP op in its header's ``op`` (``engine.dhp.protocol.Op``; which op goes in which type is
    ``nodes.op_frames.WIRE_TYPE``, checked on receipt)."""

    HELLO = 1
    """client -> server, first frame: ``{"nonce", "role", "protect", "macs", ...}`` (:mod:`nodes.wire.auth`)."""
    AUTH_CHALLENGE = 2
    """server -> client: the server's fresh nonce, its node name and the protection and MAC it chose."""
    AUTH_RESPONSE = 3
    """client -> server: ``{"proof": hex}``, proving the client holds its role's key."""
    AUTH_OK = 4
    """server -> client: ``{"proof": hex}``, the server's own proof; session keys start with the next frame."""
    ASSIGN_STAGE = 5
    """Setting a node up: ATTACH / ATTACHED (coordinator <-> node: what the node offers), ASSIGN (its stage,
    initial weights as tensors, optimiser, data and emulation settings) and ASSIGNED or REFUSED."""
    FORWARD = 6
    """The forward pass: START (coordinator -> stage-1 node: build mini-batch ``batch`` for ``chain``),
    NEXT_HOP (coordinator -> node: where to send the activation) and ACTIVATION (node -> next node, on a
    data connection: the activation tensor of ``chain``, ``reply_to`` for its gradient)."""
    BACKWARD = 7
    """The backward pass: GRADIENT (node -> previous node, data connection: the gradient of the activation it
    received) and ABORT (coordinator -> node: drop ``chain``)."""
    PARAMETERS = 8
    """Replica averaging and checkpoints (paper 3.3.2): GET_PARAMS / PARAMS (a stage's parameters, BN buffers
    and optionally SGD momentum, one tensor per key) and SET_PARAMS / PARAMS_SET (load averaged values and,
    with a time budget, a re-planned schedule)."""
    TELEMETRY = 9
    """TELEMETRY (coordinator or console -> node: ask) and SAMPLE (node: power, memory, load, temperatures,
    emulation counters)."""
    TIMING = 10
    """Progress reports, node -> coordinator: FORWARD_DONE and BACKWARD_DONE of ``chain``, with the measured
    step times (and the loss from the last stage)."""
    ERROR = 11
    """ERROR (``{"reason"}``, sent before closing a connection on purpose) and FAILED (node -> coordinator:
    ``chain`` failed here, ``peer`` when a peer could not be reached)."""
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
