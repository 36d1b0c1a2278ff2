"""engine.heap: after map_large_blocks, freed large tensors leave RSS at once (the coordinator's soak growth)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import sys, torch
    from engine.heap import map_large_blocks
    def rss_mib():
        return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
    took = map_large_blocks() if sys.argv[1] == "mapped" else None
    block = torch.ones(5_000_000); del block  # a 20 MB block freed: glibc would raise its threshold to 20 MB
    base = rss_mib()
    kept = []
    for _ in range(3):  # an averaging round: big state tensors, small objects that outlive them
        big = [torch.ones(2_000_000) for _ in range(10)]
        kept += [torch.ones(64) for _ in range(10)]
        del big
    print(took, rss_mib() - base)
""")


def probe(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO, capture_output=True, text=True, check=True)
    took, grown = out.stdout.split()
    return took, float(grown)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_state_dicts_leave_rss_once_large_blocks_are_mapped() -> None:
    took, grown = probe("mapped")
    assert took == "True"
    assert grown < 5, f"{grown:.1f} MiB of 80 MB freed stayed resident"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_without_it_glibc_keeps_freed_blocks_in_the_heap() -> None:
    """The behaviour the setting exists for (if glibc ever stops doing this, the setting can go)."""
    _, grown = probe("default")
    assert grown > 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_release_free_memory_returns_the_holes_small_tensors_leave():
    probe = textwrap.dedent("""
        import torch
        from engine.heap import map_large_blocks, release_free_memory
        def rss_mib():
            return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
        map_large_blocks()
        base = rss_mib()
        small = [torch.ones(36_000) for _ in range(1000)]  # 144 KB each: under the mapping threshold, in the heap
        keep = small[::50]  # a few survive the round and pin the heap's top
        del small
        held = rss_mib() - base
        print(release_free_memory(), held, rss_mib() - base)
    """)
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    took, held, after = out.stdout.split()
    assert took == "True" and float(held) > 100 and float(after) < 20, out.stdout
