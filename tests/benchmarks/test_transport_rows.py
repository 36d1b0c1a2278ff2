"""The transport benchmark measures what its rows say: each integrity row negotiates the MAC it is named after."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import transport  # noqa: E402

import nodes.wire.auth  # noqa: E402


def test_the_stdlib_only_row_leaves_the_next_rows_their_own_mac():
    pytest.importorskip("cryptography")
    with transport._stdlib_only():
        assert nodes.wire.auth.available_macs() == ("hmac-sha256",)
    # Every method's sender runs in this one process: a patch left behind relabelled the Poly1305 and
    # emulated-link rows (they measured HMAC-SHA256 until 2026-12-01).
    assert nodes.wire.auth.available_macs()[0] == "poly1305"


@pytest.mark.parametrize("stdlib", [False, True], ids=["poly1305", "hmac-sha256"])
def test_each_integrity_row_negotiates_its_mac_through_a_real_receiver(stdlib):
    pytest.importorskip("cryptography")
    tensor = torch.randn(250_000)  # 1 MB
    receiver, sender = ((transport._hmac_receiver, transport._hmac_sender) if stdlib
                        else (transport._litesrl_receiver, transport._litesrl_sender))
    trial = transport.run_method(receiver, sender, tensor, messages=2, warmup=1)
    assert trial.wall > 0 and trial.cpu_recv > 0
