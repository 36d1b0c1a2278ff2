"""One optimiser rule: single-machine pretraining and a DHP stage build the same SGD groups and rates."""

import pytest
import torch

from engine.augment import AugmentConfig
from engine.data.folder import ImageSet
from engine.dhp.stage import StageWorker, split_model, stage_module
from engine.errors import ConfigError
from engine.model import ModelConfig, build_model
from engine.optim import OptimConfig, build_optimizer, set_learning_rates
from engine.pretrain import PretrainConfig, Pretrainer, RunOptions

MODEL = ModelConfig(backbone="resnet18", in_channels=1, stem="compact")


def test_the_predictor_group_is_the_head_of_the_model_and_of_a_last_stage():
    model = build_model(MODEL)
    whole = build_optimizer(model, OptimConfig())
    head = {id(p) for p in model.head.parameters()}
    assert [g["name"] for g in whole.param_groups] == ["encoder", "predictor"]
    assert {id(p) for p in whole.param_groups[1]["params"]} == head
    assert sum(len(g["params"]) for g in whole.param_groups) == len(list(model.parameters()))
    first, last = split_model(model, [10])
    assert {id(p) for p in build_optimizer(stage_module(model, last), OptimConfig()).param_groups[1]["params"]} == head
    assert build_optimizer(stage_module(model, first), OptimConfig()).param_groups[1]["params"] == []


def test_rates_follow_warmup_cosine_and_keep_the_predictor_at_the_peak():
    config = OptimConfig(base_lr=0.1, batch_size=128, total_steps=10, warmup_steps=2)
    optimizer = build_optimizer(build_model(MODEL), config)
    assert config.peak_lr == pytest.approx(0.05)
    assert set_learning_rates(optimizer, config, 0) == pytest.approx(0.025)  # warm-up: 1/2 of the peak
    assert set_learning_rates(optimizer, config, 9) < 0.01
    assert [g["lr"] for g in optimizer.param_groups][1] == pytest.approx(0.05)


def test_pretrain_config_and_optim_config_convert_both_ways():
    config = PretrainConfig(batch_size=16, steps=40, base_lr=0.2, warmup_steps=3, fix_predictor_lr=False)
    assert config.optim == OptimConfig(base_lr=0.2, batch_size=16, total_steps=40, warmup_steps=3, fix_predictor_lr=False)
    assert PretrainConfig.with_optim(config.optim) == config
    assert OptimConfig.from_dict(config.optim.to_dict()) == config.optim
    with pytest.raises(ConfigError, match="exactly the keys"):
        OptimConfig.from_dict({"base_lr": 0.1})


def test_a_pretrainer_step_equals_a_whole_model_stage_step(tmp_path):
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    images = ImageSet(torch.randint(0, 255, (8, 1, 16, 16), dtype=torch.uint8, generator=generator),
                      torch.full((8,), -1), [], [], "sar")
    config = PretrainConfig(model=MODEL, modality="sar", augment=AugmentConfig(size=16), batch_size=4, steps=3,
                            warmup_steps=1, base_lr=0.5, seed=2)
    trainer = Pretrainer(config, images, RunOptions(out_dir=tmp_path, channels_last=False))
    (spec,) = split_model(trainer.model, [])
    whole = stage_module(trainer.model, spec)  # shares the trainer's tensors, under the stage's keys
    worker = StageWorker(spec, config.optim, {k: v.clone() for k, v in whole.state_dict().items()})
    for step in range(3):
        views = torch.randn(8, 1, 16, 16, generator=generator)
        loss, _, _ = trainer._train_step(views)
        trainer.step += 1
        assert worker.forward(step, views).item() == pytest.approx(loss, rel=1e-5)
        worker.backward(step, None, step)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(worker.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
