"""Real DHP pretraining on real images: three agents reading RSSCN7 from their own data path train exactly
what `litesrl pretrain`'s Pretrainer trains (same augmentations, data order, learning-rate schedule), the
checkpoint goes through `litesrl eval`, and a bad dataset path on a node is one line naming both."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from engine.augment import AugmentConfig
from engine.checkpoint import load_checkpoint
from engine.data.folder import load_images, scan_unlabelled
from engine.dhp.batches import DataSettings
from engine.dhp.events import read_events
from engine.dhp.settings import RunSettings
from engine.errors import EngineError
from engine.model import ModelConfig
from engine.pretrain import CHECKPOINT_NAME, PretrainConfig, Pretrainer, RunOptions
from tests.conftest import REPO_ROOT, shared_dataset
from tests.engine.dhp.coordinator_helpers import PROFILE, coordinator_for, plan_for
from tests.nodes.agent_procs import start_agents

pytestmark = pytest.mark.slow

LOAD = 48
RECIPE = PretrainConfig(model=ModelConfig(), modality="optical", augment=AugmentConfig(size=32, rotation="any"),
                        batch_size=4, steps=5, base_lr=2.0, warmup_steps=2, seed=5)
"""32 px views, batch 4, five iterations; base lr 2.0 (peak 0.03) so that the weights move visibly."""


@pytest.fixture(scope="module")
def rsscn7():
    return shared_dataset("rsscn7")


@pytest.fixture(scope="module")
def chain(tmp_path_factory, rsscn7):
    agents = start_agents(tmp_path_factory.mktemp("agents"), ["a", "b", "c"], data=rsscn7)
    yield agents
    for agent in agents:
        agent.stop()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _settings(out, **changes) -> RunSettings:
    base = dict(model=RECIPE.model, optim=RECIPE.optim, data=DataSettings.of_recipe(RECIPE, LOAD), seed=RECIPE.seed,
                mode="fixed", average_every=1, emulate=False, out_dir=out, request_timeout=60.0)
    return RunSettings(**{**base, **changes})


async def test_a_chain_on_real_images_equals_single_process_pretraining(chain, rsscn7, tmp_path):
    images = load_images(scan_unlabelled([rsscn7]), "optical", LOAD)
    trainer = Pretrainer(RECIPE, images, RunOptions(out_dir=tmp_path / "single", workers=0, channels_last=False))
    single = [m.loss for m in trainer.run()]

    run = _settings(tmp_path / "dhp")  # averaging after every iteration: with one replica per stage, a no-op
    coordinator = await coordinator_for(chain, run, tmp_path / "events.jsonl")
    plan = plan_for(coordinator, "fixed")
    result = await coordinator.run(plan, PROFILE)
    await coordinator.close()
    assert result.reason is None and result.step == RECIPE.steps
    events = read_events(tmp_path / "events.jsonl")
    losses = [e.loss for e in sorted((e for e in events if e.TYPE == "iteration"), key=lambda e: e.iteration)]
    assert sum(e.TYPE == "averaging" for e in events) == 0  # nothing to average with one replica per stage
    assert losses == pytest.approx(single, abs=1e-5)
    assert len(set(single)) == RECIPE.steps

    stored = load_checkpoint(tmp_path / "dhp" / CHECKPOINT_NAME)
    assert stored["pretrain_config"] == trainer.config.to_dict()  # the same recipe, as `eval` reads it
    for key, value in trainer.model.state_dict().items():
        torch.testing.assert_close(stored["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(stored["normalisation"]["mean"], trainer.mean)

    # `litesrl eval` takes the DHP checkpoint exactly as it takes a `pretrain` one.
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT))
    evaluated = subprocess.run(
        [sys.executable, "-m", "console.cli.main", "eval", "--data", str(rsscn7), "--checkpoint",
         str(tmp_path / "dhp" / CHECKPOINT_NAME), "--epochs", "5", "--no-tsne", "--out", str(tmp_path / "eval"), "--json"],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["encoder"].endswith(f"(dhp, step {RECIPE.steps})") and 0.0 <= report["overall_accuracy"] <= 1.0
    assert report["train_images"] + report["test_images"] == 385


async def test_a_bad_dataset_path_names_the_node_and_the_path(chain, tmp_path):
    missing = tmp_path / "no-such-folder"
    run = _settings(tmp_path / "dhp", data_paths={"a": str(missing)})
    coordinator = await coordinator_for(chain, run, tmp_path / "events.jsonl")
    with pytest.raises(EngineError) as caught:
        await coordinator.run(plan_for(coordinator, "fixed"), PROFILE)
    await coordinator.close()
    message = str(caught.value)
    assert "\n" not in message and message.startswith("a: ") and str(missing) in message
