"""The evaluation protocol: fractions x splits, paired against a baseline, a separate test folder, bad input."""

import pytest
import torch

from engine.checkpoint import save_checkpoint
from engine.data.folder import load_images, scan_labelled
from engine.data.synthetic import generate
from engine.errors import ConfigError, DataError
from engine.eval_config import EvalConfig
from engine.evaluate import evaluate
from engine.model import ModelConfig, build_model
from engine.protocol import protocol_markdown, run_protocol

CONFIG = EvalConfig(image_size=16, knn_k=3)


def _load(root, size=16):
    classes, records = scan_labelled(root)
    return load_images(records, "optical", size, classes)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _load(generate(tmp_path_factory.mktemp("train"), "optical", per_class=8, size=32, seed=1))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A (randomly initialised, differently seeded) encoder saved as a pretraining checkpoint."""
    torch.manual_seed(11)
    model = build_model(ModelConfig())
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save_checkpoint(path, {"kind": "pretrain", "model_config": ModelConfig().to_dict(), "model": model.state_dict(), "step": 5,
                           "normalisation": {"mean": torch.full((3,), 0.5), "std": torch.full((3,), 0.25)}})
    return str(path)


def test_fractions_by_splits_paired_against_random_init(images, checkpoint):
    torch.set_num_threads(1)
    result = run_protocol(images, CONFIG, [0.25, 0.5], 3, checkpoint, None, ModelConfig())
    assert result.baseline == "random init" and result.seeds == [0, 1, 2]
    assert [t.fraction for t in result.tables] == [0.25, 0.5]
    first, second = result.tables
    assert first.train_images == [10, 10, 10] and first.test_images == [30, 30, 30]
    assert second.train_images == [20] * 3
    for table in result.tables:
        for scores in table.scores.values():
            assert len(scores.linear) == 3 and len(scores.knn) == 3
            assert all(0.0 <= a <= 1.0 for a in scores.linear + scores.knn)
        diff = table.difference(result.encoder, result.baseline)
        encoder, base = table.scores[result.encoder], table.scores[result.baseline]
        assert diff.linear == pytest.approx([a - b for a, b in zip(encoder.linear, base.linear)])
    # the protocol's per-split score is exactly what a single evaluation of that split gives
    single = evaluate(images, EvalConfig(image_size=16, knn_k=3, train_fraction=0.5, seed=1), checkpoint)
    assert second.scores[result.encoder].linear[1] == pytest.approx(single.overall_accuracy)
    assert second.scores[result.encoder].knn[1] == pytest.approx(single.knn_accuracy)
    payload = result.to_json()
    assert payload["tables"][1]["difference"]["linear"] == pytest.approx(diff.linear)
    markdown = protocol_markdown(result)
    assert markdown.count("| paired difference |") == 2 and "**25% of the training labels** (10 training / 30 test" in markdown


def test_a_separate_test_folder_is_scored_whole(images, tmp_path):
    test = _load(generate(tmp_path / "test", "optical", per_class=4, size=32, seed=9))
    full = evaluate(images, EvalConfig(image_size=16, train_fraction=1.0), test_images=test)
    assert full.train_images == 40 and full.test_images == 20
    result = run_protocol(images, CONFIG, [0.5], 2, None, None, ModelConfig(), test_images=test)
    assert result.baseline is None and result.tables[0].train_images == [20, 20] and result.tables[0].test_images == [20, 20]


def test_bad_protocols_are_one_line_errors(images, tmp_path):
    fewer = _load(generate(tmp_path / "fewer", "optical", per_class=2, size=32, seed=3, classes=4))
    with pytest.raises(DataError, match=r"test folder.s classes \{field, forest, urban, water\} differ "
                                        r"from the training folder's \{bare, field, forest, urban, water\}"):
        run_protocol(images, CONFIG, [0.5], 1, None, None, ModelConfig(), test_images=fewer)
    with pytest.raises(DataError, match="train fraction 0.05 leaves class 'bare' \\(8 images\\) without a training image"):
        run_protocol(images, CONFIG, [0.5, 0.05], 2, None, None, ModelConfig())
    with pytest.raises(ConfigError, match="train fraction must be in"):
        evaluate(images, EvalConfig(image_size=16, train_fraction=1.5))
    with pytest.raises(ConfigError, match="leaves no test images"):
        evaluate(images, EvalConfig(image_size=16, train_fraction=1.0))
