"""Datasets: decoding (optical, 8/16-bit and float SAR), scanning, unreadable files, splits, tiling, synthetic."""

from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from engine.data.folder import load_images, scan_labelled, scan_unlabelled
from engine.data.images import SarScaling, read_image
from engine.data.split import split_indices
from engine.data.synthetic import CLASSES, generate
from engine.data.tiling import tile_folder, tile_origins
from engine.errors import ConfigError, DataError


def _write_png(path: Path, value: int, size: int = 20, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path)


def test_optical_png_decodes_to_uint8_rgb(tmp_path):
    _write_png(tmp_path / "a.png", 7, mode="L")
    image = read_image(tmp_path / "a.png", "optical")
    assert image.dtype == torch.uint8 and image.shape == (3, 20, 20) and int(image[1, 0, 0]) == 7


def test_sar_8bit_is_used_as_is_but_16bit_and_float_tiffs_go_through_db(tmp_path):
    _write_png(tmp_path / "s.png", 100, mode="L")
    assert int(read_image(tmp_path / "s.png", "sar")[0, 0, 0]) == 100
    amplitude = np.geomspace(100, 60_000, 400, dtype=np.float32).reshape(20, 20)  # 56 dB of dynamic range
    tifffile.imwrite(tmp_path / "f.tif", amplitude)
    tifffile.imwrite(tmp_path / "u.tif", amplitude.astype(np.uint16))
    for name in ("f.tif", "u.tif"):
        image = read_image(tmp_path / name, "sar", SarScaling(low_percentile=0, high_percentile=100))
        assert image.shape == (1, 20, 20) and image.dtype == torch.uint8
        flat = image.flatten().float()
        # log scaling: geometric steps in amplitude become (nearly) equal steps in the image
        steps = flat[1:] - flat[:-1]
        assert flat[0] == 0 and flat[-1] == 255 and steps.min() >= 0 and steps.max() <= 2


def test_sar_percentile_clipping_ignores_a_few_bright_scatterers(tmp_path):
    amplitude = np.full((20, 20), 10.0, dtype=np.float32)
    amplitude[::2] = 100.0
    amplitude[0, 0] = 1e9  # one corner reflector
    tifffile.imwrite(tmp_path / "p.tif", amplitude)
    image = read_image(tmp_path / "p.tif", "sar", SarScaling(low_percentile=1, high_percentile=99))
    assert int(image[0, 2, 0]) == 255 and int(image[0, 1, 0]) == 0  # 100 maps to white, not squashed by 1e9


def test_complex_tiff_uses_the_magnitude(tmp_path):
    values = (np.arange(400).reshape(20, 20) + 1).astype(np.complex64) * (1 + 1j)
    tifffile.imwrite(tmp_path / "c.tif", values)
    image = read_image(tmp_path / "c.tif", "sar", SarScaling(0, 100))
    assert int(image[0, 0, 0]) == 0 and int(image[0, -1, -1]) == 255


def test_scan_labelled_reports_classes_and_rejects_bad_folders(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        scan_labelled(tmp_path / "missing")
    with pytest.raises(DataError, match="no class sub-folders"):
        scan_labelled(tmp_path)
    _write_png(tmp_path / "b" / "1.png", 1)
    _write_png(tmp_path / "a" / "1.png", 2)
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="class folder .*c has no images"):
        scan_labelled(tmp_path)
    (tmp_path / "c").rmdir()
    classes, records = scan_labelled(tmp_path)
    assert classes == ["a", "b"] and [r.label for r in records] == [0, 1]


def test_unreadable_files_are_skipped_counted_and_reported(tmp_path):
    for i in range(3):
        _write_png(tmp_path / "x" / f"{i}.png", i)
    (tmp_path / "x" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "x" / "empty.png").write_bytes(b"")
    images = load_images(scan_unlabelled([tmp_path]), "optical", 16)
    assert len(images) == 3
    assert sorted(s.path.name for s in images.skipped) == ["broken.jpg", "empty.png"]
    assert "skipped 2 unreadable" in images.describe()


def test_a_folder_of_only_unreadable_files_is_a_data_error(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(DataError, match="none of the 1 image file"):
        load_images(scan_unlabelled([tmp_path]), "optical", 16)


def test_images_are_resized_to_a_centre_square(tmp_path):
    Image.fromarray(np.zeros((40, 80, 3), dtype=np.uint8)).save(tmp_path / "wide.png")
    images = load_images(scan_unlabelled([tmp_path]), "optical", 16)
    assert images.images.shape == (1, 3, 16, 16)


def test_centre_keeps_the_middle_pixels_and_refuses_a_crop_that_does_not_fit(tmp_path):
    image = np.zeros((40, 40), dtype=np.uint8)
    image[10:30, 10:30] = 200
    Image.fromarray(image).save(tmp_path / "chip.png")
    images = load_images(scan_unlabelled([tmp_path]), "sar", 40)
    middle = images.centre(20)
    assert middle.images.shape == (1, 1, 20, 20) and bool((middle.images == 200).all())
    with pytest.raises(DataError, match="centre crop of 41 px does not fit images of 40x40"):
        images.centre(41)


def test_stratified_split_keeps_the_fraction_per_class_and_is_seeded():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    train, test = split_indices(labels, 0.2, seed=3)
    assert set(train.tolist()).isdisjoint(test.tolist()) and len(train) + len(test) == 100
    assert torch.bincount(labels[train]).tolist() == [10, 6, 4]
    again, _ = split_indices(labels, 0.2, seed=3)
    other, _ = split_indices(labels, 0.2, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)
    for fraction, expected in ((0.1, [5, 3, 2]), (0.5, [25, 15, 10])):
        part, _ = split_indices(labels, fraction, seed=0)
        assert torch.bincount(labels[part]).tolist() == expected


def test_block_split_never_separates_a_block():
    labels = torch.tensor([0] * 40 + [1] * 40)
    train, test = split_indices(labels, 0.25, seed=1, method="block", block_size=10)
    blocks_train = {int(i) // 10 for i in train}
    blocks_test = {int(i) // 10 for i in test}
    assert blocks_train.isdisjoint(blocks_test)
    assert torch.bincount(labels[train]).tolist() == [10, 10]


def test_split_rejects_bad_fractions_and_tiny_classes():
    with pytest.raises(ConfigError, match="between 0 and 1"):
        split_indices(torch.tensor([0, 0, 1, 1]), 1.0, 0)
    with pytest.raises(DataError, match="at least 2"):
        split_indices(torch.tensor([0, 0, 1]), 0.5, 0)


def test_tile_origins_cover_the_image_without_padding():
    assert tile_origins(600, 520, 256, 256) == [(y, x) for y in (0, 256, 344) for x in (0, 256, 264)]
    assert tile_origins(100, 100, 256, 256) == []


def test_tile_folder_keeps_classes_and_pixels(tmp_path):
    scene = (np.arange(600 * 520) % 65521).astype(np.uint16).reshape(600, 520)
    (tmp_path / "src" / "lake").mkdir(parents=True)
    tifffile.imwrite(tmp_path / "src" / "lake" / "s1.tif", scene)
    _write_png(tmp_path / "src" / "lake" / "small.png", 1, size=64)
    written, skipped = tile_folder(tmp_path / "src", tmp_path / "out", 256)
    assert written == 9 and len(skipped) == 1 and "smaller" in skipped[0][1]
    patch = tifffile.imread(tmp_path / "out" / "lake" / "s1_y256_x264.tif")
    assert np.array_equal(patch, scene[256:512, 264:520])


def test_synthetic_data_is_seeded_and_has_every_class(tmp_path):
    generate(tmp_path / "a", "sar", per_class=2, size=32, seed=5)
    generate(tmp_path / "b", "sar", per_class=2, size=32, seed=5)
    classes, records = scan_labelled(tmp_path / "a")
    assert classes == sorted(CLASSES) and len(records) == 10
    for record in records:
        twin = tmp_path / "b" / record.path.relative_to(tmp_path / "a")
        assert np.array_equal(tifffile.imread(record.path), tifffile.imread(twin))
    assert tifffile.imread(records[0].path).dtype == np.uint16
