"""DHP wire protocol: framed, authenticated TCP connections that carry tensors between nodes."""

from nodes.wire.auth import default_secret_path, generate_secret, load_secret, write_secret
from nodes.wire.frame import FrameLimits, MessageType
from nodes.wire.shaping import LinkShape
from nodes.wire.transport import (
    Connection,
    ConnectionClosed,
    Message,
    Server,
    TransportTimeout,
    connect,
    serve,
)

__all__ = [
    "Connection",
    "ConnectionClosed",
    "FrameLimits",
    "LinkShape",
    "Message",
    "MessageType",
    "Server",
    "TransportTimeout",
    "connect",
    "default_secret_path",
    "generate_secret",
    "load_secret",
    "serve",
    "write_secret",
]
