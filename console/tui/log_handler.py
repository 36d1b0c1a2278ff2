"""Routes Python ``logging`` records of the console's libraries into the app's log screen as messages."""

from __future__ import annotations

import logging

from textual.app import App

from console.tui.messages import LogLine

QUIET = {"asyncssh": logging.WARNING}
"""Loggers that chat at INFO (asyncssh logs every channel) and are shown from this level only."""


class AppLogHandler(logging.Handler):
    """Posts each record to ``app`` as a :class:`LogLine` (thread-safe: post_message is)."""

    def __init__(self, app: App, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.app = app
        self._root_level = logging.NOTSET

    def filter(self, record: logging.LogRecord) -> bool:
        floor = QUIET.get(record.name.split(".", 1)[0])
        return floor is None or record.levelno >= floor

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        self.app.post_message(LogLine(text, record.levelname.lower(), record.name.split(".")[0]))

    def install(self) -> None:
        """Attach to the root logger (lowering its level to INFO if needed)."""
        root = logging.getLogger()
        root.addHandler(self)
        self._root_level = root.level
        if root.level > self.level or root.level == logging.NOTSET:
            root.setLevel(self.level)

    def remove(self) -> None:
        """Detach from the root logger and restore its level."""
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._root_level)
