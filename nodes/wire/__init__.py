"""DHP wire protocol: framed, authenticated TCP connections that carry tensors between nodes.

The public API, importable from here::

    serve, connect, Server, Handler           nodes.wire.endpoints
    Connection, Message, TransportTimeout,
    ConnectionClosed                          nodes.wire.transport
    MessageType, FrameLimits                  nodes.wire.frame
    LinkShape                                 nodes.wire.shaping
    load_secret, write_secret,
    generate_secret, default_secret_path      nodes.wire.auth

Names are resolved on first use (PEP 562), so the console can use the secret helpers or the message
types without importing torch, which only the transport needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "serve": "endpoints",
    "connect": "endpoints",
    "Server": "endpoints",
    "Handler": "endpoints",
    "Connection": "transport",
    "Message": "transport",
    "TransportTimeout": "transport",
    "ConnectionClosed": "transport",
    "MessageType": "frame",
    "FrameLimits": "frame",
    "LinkShape": "shaping",
    "load_secret": "auth",
    "write_secret": "auth",
    "generate_secret": "auth",
    "default_secret_path": "auth",
}

__all__ = sorted(_HOMES)

if TYPE_CHECKING:  # for type checkers only; at run time __getattr__ imports them lazily (F401: listed in __all__)
    from nodes.wire.auth import default_secret_path, generate_secret, load_secret, write_secret  # noqa: F401
    from nodes.wire.endpoints import Handler, Server, connect, serve  # noqa: F401
    from nodes.wire.frame import FrameLimits, MessageType  # noqa: F401
    from nodes.wire.shaping import LinkShape  # noqa: F401
    from nodes.wire.transport import Connection, ConnectionClosed, Message, TransportTimeout  # noqa: F401


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'nodes.wire' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nodes.wire.{_HOMES[name]}"), name)
