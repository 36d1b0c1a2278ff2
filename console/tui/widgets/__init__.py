"""Custom widgets of the operator console: meters, charts, the layer strip and the chain board."""
