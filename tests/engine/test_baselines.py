"""Comparison methods on lightly: each trains a couple of steps in our loop and leaves an evaluable backbone."""

import math
import sys

import pytest
import torch

from engine.augment import AugmentConfig
from engine.data.folder import load_images, scan_unlabelled
from engine.data.synthetic import generate
from engine.errors import ConfigError
from engine.evaluate import load_backbone
from engine.model import ModelConfig
from engine.pretrain import PretrainConfig, RunOptions

CONFIG = PretrainConfig(augment=AugmentConfig(size=16), batch_size=8, steps=2, warmup_steps=1, seed=3)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return load_images(scan_unlabelled([generate(tmp_path_factory.mktemp("syn"), "optical", per_class=2, size=24)]), "optical",
                       20)


@pytest.mark.parametrize("method", ["simclr", "mocov2", "byol", "swav"])
def test_each_method_trains_and_leaves_a_backbone(method, images, tmp_path):
    pytest.importorskip("lightly", reason="lightly not installed (pip install 'litesrl[baselines]')")
    from engine.baselines import BaselinePretrainer

    torch.set_num_threads(1)
    trainer = BaselinePretrainer(method, CONFIG, images, RunOptions(out_dir=tmp_path, workers=0))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    history = trainer.run()
    assert len(history) == 2 and all(math.isfinite(m.loss) for m in history)
    after = trainer.model.state_dict()
    assert not torch.equal(before["backbone.conv1.weight"], after["backbone.conv1.weight"])
    if method in ("mocov2", "byol"):  # the momentum encoder follows the online one, slowly
        target = [k for k in after if k.startswith("target.0.conv1.weight")][0]
        assert not torch.equal(before[target], after[target])
    backbone, norm, name, _ = load_backbone(str(trainer.checkpoint_path), ModelConfig(), 0)
    assert f"baseline-{method}" in name and norm is not None
    torch.testing.assert_close(backbone.state_dict()["conv1.weight"], after["backbone.conv1.weight"])


def test_without_lightly_the_error_names_the_extra(monkeypatch):
    from engine.baselines import Baseline

    monkeypatch.setitem(sys.modules, "lightly", None)
    with pytest.raises(ConfigError, match=r"need the 'lightly' package: pip install 'litesrl\[baselines\]'"):
        Baseline("simclr", ModelConfig())
