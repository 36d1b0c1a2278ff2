"""The shipped reference profiles: they load, match the model and its byte counts, and reproduce the paper's stages and counts."""

from __future__ import annotations

import pytest

from assets import asset_path
from engine.cwb.cost import CostModel
from engine.cwb.nodes_spec import identical_nodes
from engine.cwb.profile_format import load_profile
from engine.cwb.profiler import ProfilerConfig, measure_memory
from engine.cwb.search import search, smallest_partitions
from engine.cwb.transfer import Network
from engine.model import ModelConfig, build_model

BATCH = {"resnet18": 64, "resnet34": 64, "resnet50": 32}  # paper 6.1, Table 7 note for ResNet-50
PAPER_MB = {"resnet18": 7599.7, "resnet34": 10185.9, "resnet50": 13039.3}
TABLE5_MS = (1037, 1142, 922)  # Table 5, mean node time per partition
PAPER_TOTAL_MS = sum(TABLE5_MS)
PAPER_CUT = ("maxpool", "layer1_1")  # the paper's {p1, p2} | {p3..p7} | {p8..p28} on our units (README)
PAPER_NODES = {"resnet18": 3, "resnet34": 4, "resnet50": 5}  # Fig. 15
PAPER_GB = 3 * 2**30  # the paper's 3 GB per TX2 in its units (its MB are MiB)
# Stated tolerance: our exact totals count what autograd saves (each tensor once); the paper counts every
# layer's input and output (assets/profiles/README.md explains), so ours are 35-50 % of its figures.
PAPER_RATIO = (0.35, 0.50)
# Measured CPU time follows the work: ResNet-34 has 2.0x ResNet-18's multiply-adds, ResNet-50 at half the batch 1.14x.
WORK_RATIO = {"resnet34": (1.5, 2.6), "resnet50": (0.9, 1.6)}
BOARD_SPEED = {"xavier-nx": 384 * 1.10 / (256 * 1.30), "orin": 2048 * 1.30 / (256 * 1.30)}


def tx2(backbone: str):
    return load_profile(asset_path(f"profiles/tx2-{backbone}.json"))


def cpu(backbone: str):
    return load_profile(asset_path(f"profiles/cpu-{backbone}.json"))


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
    units = measure_memory(ProfilerConfig(model=ModelConfig(backbone=backbone), batch_size=BATCH[backbone]), device="meta")
    fields = ("param_bytes", "grad_bytes", "optimizer_bytes", "activation_bytes", "output_bytes")
    for layer, measured, unit in zip(tx2(backbone).layers, cpu(backbone).layers, units):
        assert tuple(getattr(layer, f) for f in fields) == tuple(getattr(unit, f) for f in fields), unit.name
        assert measured.paper_bytes == unit.paper_bytes, unit.name
    # The TX2 files scale the paper count to the paper's own total (its MB read as MiB).
    assert tx2(backbone).total_paper_bytes / 2**20 == pytest.approx(PAPER_MB[backbone], rel=1e-4)


@pytest.mark.parametrize("backbone", list(BATCH))
def test_memory_totals_within_the_stated_tolerance_of_the_paper(backbone):
    ratio = tx2(backbone).total_state_bytes / 1e6 / PAPER_MB[backbone]
    assert PAPER_RATIO[0] <= ratio <= PAPER_RATIO[1], ratio


def test_time_is_calibrated_to_table_5_at_the_papers_cut():
    profile = tx2("resnet18")
    assert profile.total_compute_ms == pytest.approx(PAPER_TOTAL_MS, abs=0.5)
    cuts = [profile.names.index(name) for name in PAPER_CUT]
    stages = CostModel(profile, Network(bandwidth=125e6)).evaluate(cuts, identical_nodes(3, PAPER_GB), "paper").stages
    assert [s.compute_ms for s in stages] == pytest.approx(TABLE5_MS, abs=0.5)
    assert profile.data_ms == 0.0  # unmeasured on a TX2 (README)


def test_measured_cpu_time_follows_the_work_and_carries_the_data_work():
    base = cpu("resnet18").total_compute_ms
    for backbone, (low, high) in WORK_RATIO.items():
        assert low <= cpu(backbone).total_compute_ms / base <= high, backbone
    assert cpu("resnet18").data_ms > 0
    assert cpu("resnet50").data_ms == pytest.approx(cpu("resnet18").data_ms / 2)  # batch 32 against 64


@pytest.mark.parametrize("board", list(BOARD_SPEED))
def test_other_boards_are_the_tx2_profile_sped_up(board):
    reference, other = tx2("resnet18"), load_profile(asset_path(f"profiles/{board}-resnet18.json"))
    assert other.total_compute_ms == pytest.approx(reference.total_compute_ms / BOARD_SPEED[board], rel=1e-9)
    assert other.total_state_bytes == reference.total_state_bytes
    assert "assumed" in other.settings.device


def test_paper_accounting_and_e_reproduce_the_papers_cut_on_six_tx2s():
    model = CostModel(tx2("resnet18"), Network(bandwidth=125e6), accounting="paper")
    result = search(model, identical_nodes(6, PAPER_GB), 3)
    assert result.best.cut_names == PAPER_CUT
    assert result.feasible_count == 2  # memory balancing leaves two cut sets (README)


@pytest.mark.parametrize("backbone", list(BATCH))
def test_paper_accounting_at_3gb_needs_the_papers_node_count(backbone):
    model = CostModel(tx2(backbone), Network(bandwidth=125e6), accounting="paper")
    assert smallest_partitions(model, identical_nodes(8, PAPER_GB)) == PAPER_NODES[backbone]


def test_readme_documents_the_derivation():
    text = asset_path("profiles/README.md").read_text(encoding="utf-8")
    for needle in ("scripts/make_reference_profiles.py", "factor", "{p8..p28}", "Linearity", "paper count", "assumptions"):
        assert needle in text, needle
