"""Exception family of the node side (agent, transport, telemetry)."""


class NodeError(Exception):
    """Base of every error the node side raises on purpose."""


class ProtocolError(NodeError):
    """A frame that is malformed, oversized, of an unknown version or type."""


class AuthError(NodeError):
    """The peer failed the shared-secret challenge."""


class TelemetryError(NodeError):
    """No telemetry source could be opened, or a source stopped answering."""
