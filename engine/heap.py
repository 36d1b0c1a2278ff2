"""Give large freed blocks back to the operating system at once (glibc), so a long run's RSS stays flat.

glibc serves a large allocation with its own ``mmap`` and unmaps it on ``free``, but it raises that
threshold to the size of every such block freed (up to 32 MiB on 64-bit). After the first replica
averaging round, whose state dicts are tens of MiB of tensors, the same sizes come from the heap
instead, and a heap only shrinks from its top: the coordinator's RSS then climbed in steps at each
averaging round of the soak benchmark (+12 % over 1000 iterations) although nothing was kept. Fixing
the threshold stops the adjustment: blocks of at least ``threshold`` bytes are always mapped and
unmapped, at the price of page faults on each such allocation, which is nothing against an averaging
round's network transfers. Not for the agents' training loops, which reuse same-sized activations at
every step and gain from the heap's reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import sys

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""glibc's ``mallopt`` parameter number (malloc.h)."""
DEFAULT_THRESHOLD = 1024 * 1024
"""Blocks of 1 MiB or more: every tensor of a state dict worth keeping an eye on, none of the small objects."""


def release_free_memory() -> bool:
    """Hand the heap's free pages back to the operating system now (glibc ``malloc_trim``); False off glibc.

    Blocks under the mapping threshold (a ResNet's many small conv and BN tensors) still come from the heap;
    called after each averaging round, this returns what the round freed between the blocks still in use.
    """
    libc = _libc()
    return libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0) == 1


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, loaded once (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def map_large_blocks(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Serve and free blocks of at least ``threshold`` bytes with their own mappings from now on (this process).

    Returns whether the setting took: False off glibc (macOS, musl), where nothing changes.
    """
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, int(threshold)) == 1
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD, %d) was refused", threshold)
    return done
