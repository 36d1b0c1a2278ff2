"""Await with a deadline without ever losing a cancellation.

``asyncio.wait_for`` before Python 3.12 returns the awaited result when its task is cancelled in the same
loop turn as that result arrives (CPython gh-86296): the cancellation is lost. A link's reader cancelled by
``close`` then goes on to wait for the next frame, for as long as the peer stays quiet (a coordinator hung
in closing after its run finished: CI, 2026-11-30). ``asyncio.timeout`` (3.11+) keeps the cancellation;
Python 3.10 (JetPack 6) falls back to ``wait_for``, and the closers do not rely on cancellation alone.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], timeout: float | None) -> T:
    """``await awaitable``, raising ``TimeoutError`` after ``timeout`` seconds (None: no deadline)."""
    if timeout is None:
        return await awaitable
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await awaitable
    return await asyncio.wait_for(awaitable, timeout)
