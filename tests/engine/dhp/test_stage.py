"""Transparency: a 3-stage chain of StageWorkers trains exactly like the single model (weights and BN buffers)."""

import pytest
import torch

from engine.dhp.stage import StageWorker, split_model, stage_module
from engine.errors import ConfigError, EngineError
from engine.model import ModelConfig, build_model
from engine.optim import OptimConfig

torch.set_num_threads(1)

CONFIG = ModelConfig(backbone="resnet18", in_channels=1, stem="compact")
OPTIM = OptimConfig(base_lr=0.5, batch_size=4, total_steps=6, warmup_steps=2)


def _batches(steps: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(8, 1, 16, 16, generator=generator) for _ in range(steps)]  # (2B, C, H, W), B = 4


def _single_model_states(steps: int) -> list[dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = build_model(CONFIG).train()
    predictor = list(model.head.predictor.parameters())
    ids = {id(p) for p in predictor}
    optimizer = torch.optim.SGD(
        [{"params": [p for p in model.parameters() if id(p) not in ids], "predictor": False},
         {"params": predictor, "predictor": True}],
        lr=0.0, momentum=OPTIM.momentum, weight_decay=OPTIM.weight_decay,
    )
    states = []
    for step, views in enumerate(_batches(steps)):
        loss = model(views).loss
        optimizer.zero_grad()
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = OPTIM.lr(step, predictor=group["predictor"])
        optimizer.step()
        states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return states


def test_three_stage_chain_equals_single_model_training():
    steps = 3
    reference = _single_model_states(steps)
    torch.manual_seed(0)
    model = build_model(CONFIG)
    specs = split_model(model, [3, 7])
    workers = [StageWorker(spec, OPTIM, {k: v.clone() for k, v in stage_module(model, spec).state_dict().items()})
               for spec in specs]
    # Stage modules share the model's tensors, so storage addresses map stage keys to model keys.
    full = {v.data_ptr(): k for k, v in model.state_dict().items()}
    keymaps = [{k: full[v.data_ptr()] for k, v in stage_module(model, spec).state_dict().items()} for spec in specs]
    assert sorted(k for m in keymaps for k in m.values()) == sorted(full.values())  # every tensor is somewhere
    assert workers[0].is_first and workers[-1].is_last and not workers[1].is_first
    losses = []
    for step, views in enumerate(_batches(steps)):
        x = workers[0].forward(step, views)
        x = workers[1].forward(step, x)
        losses.append(workers[2].forward(step, x).item())
        grad = workers[2].backward(step, None, step)
        grad = workers[1].backward(step, grad, step)
        assert workers[0].backward(step, grad, step) is None
        assert all(w.in_flight() == [] for w in workers)
        for worker, keys in zip(workers, keymaps):
            for local, value in worker.state_dict().items():
                expected = reference[step][keys[local]]
                assert torch.allclose(value, expected, rtol=1e-4, atol=1e-5), f"step {step}: {keys[local]} differs"
    assert len(set(losses)) == steps  # the weights really moved


def test_discard_drops_an_aborted_mini_batch_and_bad_cuts_are_refused():
    torch.manual_seed(0)
    model = build_model(CONFIG)
    spec = split_model(model, [3, 7])[0]
    worker = StageWorker(spec, OPTIM)
    worker.forward(5, torch.randn(8, 1, 16, 16))
    assert worker.in_flight() == [5]
    worker.discard(5)
    assert worker.in_flight() == []
    with pytest.raises(ConfigError, match="increasing"):
        split_model(model, [7, 3])


def test_a_worker_rebuilt_from_a_state_with_momentum_continues_exactly():
    torch.manual_seed(0)
    model = build_model(CONFIG)
    specs = split_model(model, [3, 7])
    spec = specs[2]  # the last stage: it steps from the loss alone
    original = StageWorker(spec, OPTIM, {k: v.clone() for k, v in stage_module(model, spec).state_dict().items()})
    with torch.no_grad():  # what the earlier stages would send
        inputs = [stage_module(model, specs[1])(stage_module(model, specs[0])(views)) for views in _batches(3)]
    for step in range(2):
        original.forward(step, inputs[step])
        original.backward(step, None, step)
    saved = original.state_dict(momentum=True)
    momentum = [k for k in saved if k.startswith("momentum:")]
    assert momentum and len(momentum) == len(list(original.module.parameters()))
    assert all(not k.startswith("momentum:") for k in original.state_dict())  # averaging sees weights only

    resumed, fresh = StageWorker(spec, OPTIM, saved), StageWorker(spec, OPTIM, original.state_dict())
    for worker in (original, resumed, fresh):
        worker.forward(2, inputs[2])
        worker.backward(2, None, 2)
    for key, value in original.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in original.state_dict().items())


def test_momentum_for_a_parameter_the_stage_lacks_is_refused():
    torch.manual_seed(0)
    spec = split_model(build_model(CONFIG), [3, 7])[0]
    worker = StageWorker(spec, OPTIM)
    with pytest.raises(EngineError, match="momentum for parameter"):
        worker.load_state_dict({**worker.state_dict(), "momentum:head.nope.weight": torch.zeros(1)})


def test_the_input_gradient_is_handed_back_before_the_weight_update():
    torch.manual_seed(0)
    model = build_model(CONFIG)
    first, last = (StageWorker(spec, OPTIM, {k: v.clone() for k, v in stage_module(model, spec).state_dict().items()})
                   for spec in split_model(model, [3]))
    views = _batches(1)[0]
    last.forward(0, first.forward(0, views))
    before = {k: v.clone() for k, v in last.state_dict().items()}
    seen = []
    # What the previous stage may already use while this one steps: the weights have not moved yet.
    returned = last.backward(0, None, 0, lambda grad: seen.append(
        (grad.clone(), all(torch.equal(v, before[k]) for k, v in last.state_dict().items()))))
    assert len(seen) == 1 and seen[0][1], "the gradient must be handed back before the optimiser step"
    assert torch.equal(seen[0][0], returned)
    assert any(not torch.equal(v, before[k]) for k, v in last.state_dict().items())  # then the step ran
