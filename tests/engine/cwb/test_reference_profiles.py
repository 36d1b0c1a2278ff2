"""The shipped TX2-like reference profiles: they load, match the model and its exact byte counts, and sit where the paper is."""

from __future__ import annotations

import pytest

from assets import asset_path
from engine.cwb.nodes_spec import identical_nodes
from engine.cwb.plan import CostModel
from engine.cwb.profile_format import load_profile
from engine.cwb.profiler import ProfilerConfig, measure_memory
from engine.cwb.search import search
from engine.cwb.transfer import Network
from engine.model import ModelConfig, build_model

BATCH = {"resnet18": 64, "resnet34": 64, "resnet50": 32}  # paper 6.1, Table 7 note for ResNet-50
PAPER_MB = {"resnet18": 7599.7, "resnet34": 10185.9, "resnet50": 13039.3}
PAPER_TOTAL_MS = 1037 + 1142 + 922  # Table 5, mean node time per partition
# Stated tolerance: our totals count what autograd saves (each tensor once); the paper counts every
# layer's input and output (assets/profiles/README.md explains), so ours are 35-50 % of its figures.
PAPER_RATIO = (0.35, 0.50)
# Time follows the work: ResNet-34 has 2.0x ResNet-18's multiply-adds, ResNet-50 at half the batch 1.14x.
WORK_RATIO = {"resnet34": (1.6, 2.6), "resnet50": (0.9, 1.6)}
BOARD_SPEED = {"xavier-nx": 384 * 1.10 / (256 * 1.30), "orin": 2048 * 1.30 / (256 * 1.30)}


def tx2(backbone: str):
    return load_profile(asset_path(f"profiles/tx2-{backbone}.json"))


@pytest.mark.parametrize("backbone", list(BATCH))
def test_profile_is_lite_srl_at_the_papers_setting(backbone):
    profile = tx2(backbone)
    s = profile.settings
    assert (s.model, s.backbone, s.batch_size, s.image_size, s.channels, s.optimizer, s.dtype) == (
        "lite-srl", backbone, BATCH[backbone], 224, 3, "sgd", "float32")
    assert s.device.startswith("Jetson TX2 (derived")
    expected = [name for name, _ in build_model(ModelConfig(backbone=backbone)).partitionable_layers()]
    assert list(profile.names) == expected
    assert all(layer.forward_ms > 0 and layer.backward_ms > 0 for layer in profile.layers)


@pytest.mark.parametrize("backbone", list(BATCH))
def test_bytes_are_exact_at_the_target_size(backbone):
    profile = tx2(backbone)
    units = measure_memory(ProfilerConfig(model=ModelConfig(backbone=backbone), batch_size=BATCH[backbone]), device="meta")
    fields = ("param_bytes", "grad_bytes", "optimizer_bytes", "activation_bytes", "output_bytes")
    for layer, unit in zip(profile.layers, units):
        assert tuple(getattr(layer, f) for f in fields) == tuple(getattr(unit, f) for f in fields), unit.name


@pytest.mark.parametrize("backbone", list(BATCH))
def test_memory_totals_within_the_stated_tolerance_of_the_paper(backbone):
    ratio = tx2(backbone).total_state_bytes / 1e6 / PAPER_MB[backbone]
    assert PAPER_RATIO[0] <= ratio <= PAPER_RATIO[1], ratio


def test_time_is_calibrated_to_table_5_and_follows_the_work():
    base = tx2("resnet18").total_compute_ms
    assert base == pytest.approx(PAPER_TOTAL_MS, abs=0.5)
    for backbone, (low, high) in WORK_RATIO.items():
        assert low <= tx2(backbone).total_compute_ms / base <= high, backbone


@pytest.mark.parametrize("board", list(BOARD_SPEED))
def test_other_boards_are_the_tx2_profile_sped_up(board):
    reference, other = tx2("resnet18"), load_profile(asset_path(f"profiles/{board}-resnet18.json"))
    assert other.total_compute_ms == pytest.approx(reference.total_compute_ms / BOARD_SPEED[board], rel=1e-9)
    assert other.total_state_bytes == reference.total_state_bytes
    assert "assumed" in other.settings.device


def test_three_partitions_of_resnet18_fit_3gb_boards_and_balance():
    model = CostModel(tx2("resnet18"), Network(bandwidth=125e6))
    best = search(model, identical_nodes(6, 3 * 10**9), 3).best
    assert best.fits
    assert max(s.compute_ms for s in best.stages) < 1.5 * PAPER_TOTAL_MS / 3  # about 1 s per partition, as on the TX2s


def test_readme_documents_the_derivation():
    text = asset_path("profiles/README.md").read_text(encoding="utf-8")
    for needle in ("scripts/make_reference_profiles.py", "k = 3101 ms", "Linearity", "paper-style count", "assumptions"):
        assert needle in text, needle
