"""Mixed precision: bf16 autocast trains on a CPU (loss falls, weights stay fp32); fp16 is GPU-only."""

import pytest
import torch

from engine.augment import AugmentConfig
from engine.data.folder import load_images, scan_unlabelled
from engine.data.synthetic import generate
from engine.errors import ConfigError
from engine.precision import MixedPrecision
from engine.pretrain import PretrainConfig, Pretrainer, RunOptions


@pytest.mark.slow
@pytest.mark.timeout(900)  # minutes on a loaded 2-core machine
def test_bf16_on_cpu_runs_in_bf16_and_reduces_the_loss(tmp_path):
    torch.set_num_threads(1)
    images = load_images(scan_unlabelled([generate(tmp_path / "syn", "optical", per_class=4, size=32, seed=1)]), "optical", 24)
    config = PretrainConfig(augment=AugmentConfig(size=16), batch_size=8, steps=12, warmup_steps=2, seed=3, base_lr=0.5)
    trainer = Pretrainer(config, images, RunOptions(out_dir=tmp_path / "run", workers=0, precision="bf16"))
    seen = set()
    trainer.model.backbone.conv1.register_forward_hook(lambda module, args, output: seen.add(output.dtype))
    history = trainer.run()
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
    first, last = sum(m.loss for m in history[:3]) / 3, sum(m.loss for m in history[-3:]) / 3
    assert last < first - 0.02, [round(m.loss, 3) for m in history]


def test_fp16_needs_a_gpu_and_unknown_precisions_are_refused():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU; use --precision bf16"):
        MixedPrecision("fp16", torch.device("cpu"))
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        MixedPrecision("fp8", torch.device("cpu"))
    with MixedPrecision("fp32", torch.device("cpu")).autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
