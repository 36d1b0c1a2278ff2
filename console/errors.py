"""Exception family of the console; each turns into one readable line and an exit code."""


class ConsoleError(Exception):
    """Base of every error the console raises on purpose."""

    exit_code = 1


class InventoryError(ConsoleError):
    """An inventory file that is missing, malformed or inconsistent."""

    exit_code = 2


class FleetError(ConsoleError):
    """A node that cannot be reached, authenticated or driven over SSH."""

    exit_code = 3
