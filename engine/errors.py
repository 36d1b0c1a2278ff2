"""Exception family of the engine; the CLI and TUI turn these into one-line messages."""


class EngineError(Exception):
    """Base of every error the engine raises on purpose (bad input, bad files, bad settings)."""


class DataError(EngineError):
    """A dataset folder or image that cannot be used (missing, empty, no readable images)."""


class ConfigError(EngineError):
    """A setting that is out of range or inconsistent with another setting."""


class CheckpointError(EngineError):
    """A checkpoint that is missing, unreadable or does not match the requested model."""


class ProfileError(EngineError):
    """A CWB profile file that is missing, malformed or of an unknown version."""


class PartitionError(EngineError):
    """No partition satisfies the memory budgets, or the search inputs are inconsistent."""
