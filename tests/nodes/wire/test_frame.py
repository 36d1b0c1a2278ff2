"""The wire format on its own: prefix and header encoding, validation and limits, without sockets."""

from __future__ import annotations

import json
import struct

import pytest

from nodes.errors import ProtocolError
from nodes.wire.frame import (
    MAGIC,
    PREFIX,
    PROTOCOL_VERSION,
    FrameLimits,
    MessageType,
    TensorSpec,
    decode_header,
    decode_prefix,
    encode_header,
    encode_prefix,
    spec_for,
)

LIMITS = FrameLimits(max_header_bytes=1024, max_payload_bytes=10_000)


def test_prefix_round_trip_for_every_message_type():
    for msg_type in MessageType:
        prefix = decode_prefix(encode_prefix(msg_type, 17, 9_999), LIMITS)
        assert (prefix.type, prefix.header_len, prefix.payload_len) == (msg_type, 17, 9_999)


def test_prefix_is_twenty_bytes_in_network_order():
    data = encode_prefix(MessageType.FORWARD, 0x0102, 0x0304)
    assert len(data) == PREFIX.size == 20
    assert data[:4] == MAGIC
    assert data[4] == PROTOCOL_VERSION and data[5] == MessageType.FORWARD
    assert data[8:12] == b"\x00\x00\x01\x02"
    assert data[12:20] == b"\x00" * 6 + b"\x03\x04"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n", "bad magic b'GET '"),
        (struct.pack("!4sBBHIQ", MAGIC, 9, 1, 0, 0, 0), "unsupported protocol version 9"),
        (struct.pack("!4sBBHIQ", MAGIC, PROTOCOL_VERSION, 0, 0, 0, 0), "unknown message type 0"),
        (struct.pack("!4sBBHIQ", MAGIC, PROTOCOL_VERSION, 200, 0, 0, 0), "unknown message type 200"),
        (struct.pack("!4sBBHIQ", MAGIC, PROTOCOL_VERSION, 6, 0, 1025, 0), "header of 1025 bytes exceeds the limit of 1024"),
        (struct.pack("!4sBBHIQ", MAGIC, PROTOCOL_VERSION, 6, 0, 2, 2**63), f"payload of {2**63} bytes exceeds"),
        (b"LSRL", "frame prefix is 4 bytes, expected 20"),
    ],
)
def test_bad_prefixes_are_refused_with_the_reason(data, message):
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace("/", ".")):
        decode_prefix(data[: PREFIX.size], LIMITS)


def test_header_round_trip_keeps_meta_and_specs():
    meta = {"step": 3, "chain": [0, 1], "lr": 0.05, "name": "stage-β", "flag": None, "ok": True}
    specs = [spec_for("float32", (2, 3)), spec_for("bfloat16", ()), spec_for("int64", (0, 4))]
    decoded_meta, decoded_specs = decode_header(encode_header(meta, specs), payload_len=24 + 2 + 0)
    assert decoded_meta == meta
    assert decoded_specs == [
        TensorSpec("float32", (2, 3), 24),
        TensorSpec("bfloat16", (), 2),
        TensorSpec("int64", (0, 4), 0),
    ]


def test_header_that_is_not_json_serialisable_is_refused_at_encoding():
    with pytest.raises(ProtocolError, match="not JSON-serialisable"):
        encode_header({"when": object()}, [])
    with pytest.raises(ProtocolError, match="not JSON-serialisable"):
        encode_header({"loss": float("nan")}, [])


def test_unsupported_dtype_cannot_be_described():
    with pytest.raises(ProtocolError, match="dtype complex64 cannot be sent"):
        spec_for("complex64", (2,))


def _header(tensors, meta=None) -> bytes:
    return json.dumps({"meta": meta or {}, "tensors": tensors}).encode()


@pytest.mark.parametrize(
    ("data", "payload_len", "message"),
    [
        (b"\xff\xfe", 0, "not valid UTF-8 JSON"),
        (b"{not json", 0, "not valid UTF-8 JSON"),
        (b"[1, 2]", 0, "exactly the keys 'meta' and 'tensors'"),
        (json.dumps({"meta": {}, "tensors": [], "x": 1}).encode(), 0, "exactly the keys"),
        (json.dumps({"meta": [], "tensors": []}).encode(), 0, "'meta' must be an object"),
        (json.dumps({"meta": {}, "tensors": {}}).encode(), 0, "'tensors' must be a list"),
        (_header([{"dtype": "float32", "shape": [2]}]), 8, "tensor 0: description must have exactly"),
        (_header([{"dtype": "object", "shape": [2], "nbytes": 8}]), 8, "tensor 0: unknown dtype 'object'"),
        (_header([{"dtype": "float32", "shape": [-2], "nbytes": -8}]), 0, "shape must be a list"),
        (_header([{"dtype": "float32", "shape": [True], "nbytes": 4}]), 4, "shape must be a list"),
        (_header([{"dtype": "float32", "shape": [1] * 33, "nbytes": 4}]), 4, "at most 32"),
        (_header([{"dtype": "float32", "shape": [2], "nbytes": 4}]), 4, "nbytes 4 does not match float32 of shape"),
        (_header([{"dtype": "uint8", "shape": [4], "nbytes": 4}]), 5, "describe 4 bytes but the prefix declares a payload of 5"),
        (
            _header([{"dtype": "uint8", "shape": [4], "nbytes": 4}, {"dtype": "int8", "shape": [9], "nbytes": 9}]),
            4,
            "describe 13 bytes",
        ),
    ],
)
def test_bad_headers_are_refused_with_the_reason(data, payload_len, message):
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace("[", r"\[")):
        decode_header(data, payload_len)


def test_limits_must_be_sane():
    with pytest.raises(ProtocolError, match="max_header_bytes"):
        FrameLimits(max_header_bytes=10)
    with pytest.raises(ProtocolError, match="max_payload_bytes"):
        FrameLimits(max_payload_bytes=-1)


