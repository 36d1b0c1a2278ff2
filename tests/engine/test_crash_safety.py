"""Crash safety: a metrics log torn mid-line, the folder synced after an atomic rename, decoding limits."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from engine.data import images
from engine.data.images import read_image
from engine.io import atomic_write_text, read_jsonl
from engine.pretrain import _truncate_metrics


def test_a_torn_last_metrics_line_is_dropped_and_resume_truncation_works(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo')
    assert [r["step"] for r in read_jsonl(path)] == [1, 2, 3]
    _truncate_metrics(path, 2)
    assert [r["step"] for r in read_jsonl(path)] == [1, 2]
    assert path.read_text().endswith("\n")


def test_a_bad_line_before_the_last_is_an_error_naming_it(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_jsonl(path)


def test_atomic_write_syncs_the_folder_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.path.isdir(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(tmp_path / "f.txt", "x")
    assert synced == [False, True]  # the file, then its folder


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_images_over_the_pixel_limit_are_refused_from_their_header(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    path = tmp_path / f"big{suffix}"
    if suffix == ".png":
        Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(path)
    else:
        import tifffile

        tifffile.imwrite(path, np.zeros((30, 30), dtype=np.uint16))
    with pytest.raises(ValueError, match="exceeds the limit of 100 pixels|pixels exceeds the limit of 100"):
        read_image(path, "optical" if suffix == ".png" else "sar")
    small = tmp_path / f"small{suffix}"
    if suffix == ".png":
        Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(small)
    else:
        import tifffile

        tifffile.imwrite(small, np.ones((8, 8), dtype=np.uint16))
    assert read_image(small, "optical" if suffix == ".png" else "sar").shape[-2:] == (8, 8)


def test_checkpoints_are_not_loaded_on_torch_releases_open_to_cve_2025_32434():
    from engine.checkpoint import check_torch_for_loading
    from engine.errors import CheckpointError

    with pytest.raises(CheckpointError, match="CVE-2025-32434.*torch >= 2.6"):
        check_torch_for_loading("2.5.0a0+872d972e41.nv24.08")
    check_torch_for_loading("2.6.0")
    check_torch_for_loading("2.14.1+cpu")
