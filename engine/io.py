"""Atomic file writes (a crash mid-write never leaves a half-written checkpoint, profile or config) and
reading append-only JSON-lines logs that a crash may have cut mid-line."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(fileobj)`` on a temporary file beside ``path``, fsync it, then rename over ``path``.

    The rename is atomic on POSIX, so readers see either the old file or the new one; the folder is
    fsynced after it, so the rename itself survives a power cut (a board pulled from its supply).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return target


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform or file system that cannot open folders: the rename is all we can do
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the data itself is already synced
    finally:
        os.close(fd)


def read_jsonl(path: str | os.PathLike) -> list[Any]:
    """The records of a JSON-lines file, one per non-empty line. A last line cut by a crash mid-write is
    dropped; a bad line before it raises ValueError naming the file and line."""
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                break  # torn by a crash mid-append: the step it described was never checkpointed
            raise ValueError(f"{path}: line {number} is not JSON") from None
    return records


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically replace ``path`` with ``text`` (UTF-8)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Atomically replace ``path`` with ``data`` as indented JSON."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


class LineTail:
    """Follows a growing file: each ``poll`` returns the lines (bytes, newline removed) completed since the
    last; a partial last line waits for its end, unless ``final`` (the writer is gone). A file that shrank
    was started over by its writer (a new run): it is read again from its start."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._offset = 0
        self._partial = b""
        self.lines = 0
        """Complete lines returned since the file's start (its line number of the last one)."""

    def poll(self, final: bool = False) -> list[bytes]:
        """New complete lines (none while the file does not exist yet)."""
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._offset:
                    self._offset, self._partial, self.lines = 0, b"", 0
                handle.seek(self._offset)
                chunk = handle.read()
        except FileNotFoundError:
            return []
        self._offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        self.lines += len(complete)
        return complete
