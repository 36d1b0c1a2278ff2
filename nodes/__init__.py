"""What runs on a board: the node agent, the wire protocol and telemetry providers."""
