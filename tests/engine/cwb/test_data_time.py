"""Stage-1 data work: real decoding and both augmented views of a mini-batch, timed, on synthetic or given images."""

from __future__ import annotations

import pytest

from engine.cwb.data_time import measure_data_ms
from engine.data.synthetic import generate
from engine.errors import ConfigError, DataError


def test_synthetic_scenes_are_decoded_and_augmented():
    ms = measure_data_ms(4, 32, "optical", repeats=1)
    assert 0.0 < ms < 60_000.0


def test_a_given_folder_is_read_and_more_images_take_longer(tmp_path):
    generate(tmp_path, "sar", per_class=4, size=64)  # 16-bit TIFFs through the dB scaling path
    one = min(measure_data_ms(2, 32, "sar", folder=tmp_path, repeats=3) for _ in range(2))
    many = min(measure_data_ms(16, 32, "sar", folder=tmp_path, repeats=3) for _ in range(2))
    assert many > one > 0.0


def test_bad_folder_and_repeats_are_errors(tmp_path):
    with pytest.raises(DataError, match="no images"):
        measure_data_ms(2, 32, "optical", folder=tmp_path, repeats=1)
    with pytest.raises(ConfigError, match="repeats"):
        measure_data_ms(2, 32, "optical", repeats=0)
