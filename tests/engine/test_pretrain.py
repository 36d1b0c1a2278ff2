"""Pretraining: resume reproduces the uninterrupted trajectory; metrics, checkpoints, budgets."""

import json

import pytest
import torch

from engine.augment import AugmentConfig
from engine.checkpoint import load_checkpoint
from engine.data.folder import load_images, scan_unlabelled
from engine.data.synthetic import generate
from engine.errors import CheckpointError
from engine.pretrain import PretrainConfig, Pretrainer, RunOptions


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = generate(tmp_path_factory.mktemp("syn"), "optical", per_class=4, size=32, seed=1)
    return load_images(scan_unlabelled([root]), "optical", 24)


CONFIG = PretrainConfig(augment=AugmentConfig(size=16), batch_size=4, steps=6, warmup_steps=2, seed=3)


def _params(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resumed_run_equals_the_uninterrupted_run(images, tmp_path):
    torch.set_num_threads(1)
    straight = Pretrainer(CONFIG, images, RunOptions(out_dir=tmp_path / "a", workers=0))
    straight.run()

    def interrupt(metrics, total):
        if metrics.step == 3:
            raise KeyboardInterrupt

    first = Pretrainer(CONFIG, images, RunOptions(out_dir=tmp_path / "b", workers=0))
    with pytest.raises(KeyboardInterrupt):
        first.run(interrupt)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    second = Pretrainer(CONFIG, images, RunOptions(out_dir=tmp_path / "b", workers=0))
    second.resume()
    second.run()
    expected, got = _params(straight), _params(second)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.allclose(expected[key].float(), got[key].float(), atol=1e-6), key
    lines = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [record["step"] for record in lines] == [1, 2, 3, 4, 5, 6]


def test_a_background_augmentation_process_gives_the_same_views(images, tmp_path):
    torch.set_num_threads(1)
    config = PretrainConfig(augment=AugmentConfig(size=16), batch_size=4, steps=2, warmup_steps=1)
    inline = Pretrainer(config, images, RunOptions(out_dir=tmp_path / "a", workers=0)).run()
    background = Pretrainer(config, images, RunOptions(out_dir=tmp_path / "b", workers=1)).run()
    assert [m.loss for m in inline] == pytest.approx([m.loss for m in background], abs=1e-6)


def test_metrics_log_loss_lr_and_the_collapse_indicator(images, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 35}\n')  # left by a run stopped before its first checkpoint
    Pretrainer(CONFIG, images, RunOptions(out_dir=tmp_path, workers=0)).run()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    for line in lines:
        assert -1 <= line["loss"] <= 1 and 0 < line["collapse_std"] < 1 and line["lr"] > 0
    assert lines[0]["lr"] < lines[1]["lr"]  # warm-up
    assert lines[-1]["lr"] < lines[2]["lr"]  # cosine decay
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_checkpoint_holds_everything_needed_to_rebuild(images, tmp_path):
    Pretrainer(CONFIG, images, RunOptions(out_dir=tmp_path, workers=0)).run()
    data = load_checkpoint(tmp_path / "checkpoint.pt")
    assert data["step"] == 6 and data["model_config"]["variant"] == "litesrl"
    assert data["pretrain_config"]["batch_size"] == 4 and len(data["normalisation"]["mean"]) == 3


def test_resume_with_other_settings_is_refused(images, tmp_path):
    Pretrainer(CONFIG, images, RunOptions(out_dir=tmp_path, workers=0)).run()
    other = PretrainConfig(augment=AugmentConfig(size=16), batch_size=4, steps=6, warmup_steps=2, seed=4)
    with pytest.raises(CheckpointError, match="other settings"):
        Pretrainer(other, images, RunOptions(out_dir=tmp_path, workers=0)).resume()


def test_a_time_budget_replans_the_schedule(images, tmp_path):
    config = PretrainConfig(augment=AugmentConfig(size=16), batch_size=4, steps=10_000, warmup_steps=1)
    trainer = Pretrainer(config, images, RunOptions(out_dir=tmp_path, workers=0, time_budget=1e-3))
    history = trainer.run()
    assert trainer.config.steps == len(history) == 7  # replanned after warm-up + 5 steps: nothing left
    assert load_checkpoint(tmp_path / "checkpoint.pt")["pretrain_config"]["steps"] == 7


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x80\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not readable"):
        load_checkpoint(path)


def test_a_time_budget_is_replanned_from_the_recent_step_rate(images, tmp_path, monkeypatch):
    """Slow first steps (start-up) must not end the run far inside its budget, nor may the plan
    outgrow the loader: the re-plan after the step count doubles uses the recent rate."""
    import engine.pretrain as pretrain_module

    calls = {"n": 0}

    class Clock:
        @staticmethod
        def perf_counter() -> float:
            calls["n"] += 1
            # two clock reads per step: the first 6 steps take 1 s each, later ones 0.1 s
            return sum(0.5 if i < 12 else 0.05 for i in range(calls["n"]))

    monkeypatch.setattr(pretrain_module, "time", Clock)
    config = PretrainConfig(augment=AugmentConfig(size=16), batch_size=4, steps=10, warmup_steps=1)
    trainer = Pretrainer(config, images, RunOptions(out_dir=tmp_path, workers=0, time_budget=20.0))
    history = trainer.run()
    # the first plan (after 6 steps at ~1 s) allows about 20 steps; the recent 0.1 s/step allows ~140
    assert trainer.config.steps == len(history) > 100
    assert history[-1].elapsed_seconds <= 20.0 * 1.05
