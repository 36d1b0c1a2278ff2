"""DHP ops on the wire: each :class:`engine.dhp.protocol.Op` travels in a frame of the closest MessageType.

The frame's header carries ``{"op": name, ...}``; a frame whose op is unknown or does not belong to
its frame type is a :class:`ProtocolError`, so a confused or hostile peer is cut off by the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from engine.dhp.protocol import Message, Op
from nodes.errors import ProtocolError
from nodes.wire import Connection, FrameLimits, MessageType

WIRE_TYPE: Mapping[Op, MessageType] = {
    Op.ATTACH: MessageType.ASSIGN_STAGE,
    Op.ATTACHED: MessageType.ASSIGN_STAGE,
    Op.ASSIGN: MessageType.ASSIGN_STAGE,
    Op.ASSIGNED: MessageType.ASSIGN_STAGE,
    Op.REFUSED: MessageType.ASSIGN_STAGE,
    Op.START: MessageType.FORWARD,
    Op.FORWARD_DONE: MessageType.TIMING,
    Op.NEXT_HOP: MessageType.FORWARD,
    Op.ACTIVATION: MessageType.FORWARD,
    Op.GRADIENT: MessageType.BACKWARD,
    Op.BACKWARD_DONE: MessageType.TIMING,
    Op.ABORT: MessageType.BACKWARD,
    Op.FAILED: MessageType.ERROR,
    Op.GET_PARAMS: MessageType.PARAMETERS,
    Op.PARAMS: MessageType.PARAMETERS,
    Op.SET_PARAMS: MessageType.PARAMETERS,
    Op.PARAMS_SET: MessageType.PARAMETERS,
    Op.TELEMETRY: MessageType.TELEMETRY,
    Op.SAMPLE: MessageType.TELEMETRY,
    Op.PING: MessageType.PING,
    Op.PONG: MessageType.PONG,
    Op.ERROR: MessageType.ERROR,
    Op.SHUTDOWN: MessageType.SHUTDOWN,
}
"""The frame type each op travels in (for people reading a capture, and checked on receipt)."""


_PLAIN = {MessageType.SHUTDOWN: Op.SHUTDOWN, MessageType.ERROR: Op.ERROR}


async def send_op(
    conn: Connection,
    op: Op,
    header: Mapping[str, Any] | None = None,
    tensors: Sequence[torch.Tensor] = (),
    *,
    timeout: float | None = None,
) -> None:
    """Send ``op`` with ``header`` and ``tensors`` on ``conn``."""
    await conn.send(WIRE_TYPE[op], {"op": op.value, **(header or {})}, tensors, timeout=timeout)


async def recv_op(conn: Connection, *, timeout: float | None = None, limits: FrameLimits | None = None) -> Message:
    """The next op from ``conn`` (a frame within ``limits``, default the connection's); raises ProtocolError
    for a frame that is not a valid op."""
    frame = await conn.recv(timeout=timeout, limits=limits)
    if "op" not in frame.header and frame.type in _PLAIN:
        # A bare SHUTDOWN, or the ERROR the wire server sends with its reason before it closes a connection.
        return Message(_PLAIN[frame.type], dict(frame.header), frame.tensors)
    header = dict(frame.header)
    name = header.pop("op", None)
    try:
        op = Op(name)
    except ValueError:
        raise ProtocolError(f"{frame.type.name} frame carries unknown op {name!r}") from None
    if WIRE_TYPE[op] is not frame.type:
        raise ProtocolError(f"op {op.value!r} arrived in a {frame.type.name} frame, expected {WIRE_TYPE[op].name}")
    return Message(op, header, frame.tensors)


def field(message: Message, key: str, kind: type | tuple[type, ...]) -> Any:
    """``message.header[key]`` checked to be of ``kind``; ProtocolError names the op and key otherwise."""
    value = message.header.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{message.op.value}: '{key}' must be {_kind_name(kind)}, got {value!r:.60}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)
