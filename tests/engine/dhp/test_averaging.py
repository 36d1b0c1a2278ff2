"""Replica averaging: plain means over uneven groups, BN running stats and counters, dtypes, errors."""

import pytest
import torch
from torch import nn

from engine.dhp.averaging import AveragingError, average_states, divergence

torch.set_num_threads(1)


def _block() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2))


def _train(model: nn.Module, steps: int, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = model(torch.randn(4, 2, 6, 6, generator=generator)).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("replicas", [3, 2, 1])  # the paper's 3/2/1 groups
def test_uneven_groups_average_weights_and_bn_statistics(replicas):
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in _block().state_dict().items()}
    states = []
    for index in range(replicas):
        model = _block()
        model.load_state_dict(start)
        states.append(_train(model, steps=2 + 3 * index, seed=index))  # uneven work per replica
    averaged = average_states(states, start)
    for key in ("0.weight", "4.bias", "1.running_mean", "1.running_var"):
        assert torch.allclose(averaged[key], sum(s[key] for s in states) / replicas, atol=1e-6)
        assert averaged[key].dtype == torch.float32
    # Every replica started at 0 batches; the stage has seen all of them: 2 + 5 + 8 for 3/2/1's first group.
    assert averaged["1.num_batches_tracked"].item() == sum(2 + 3 * i for i in range(replicas))
    assert averaged["1.num_batches_tracked"].dtype == torch.long
    merged = _block()
    merged.load_state_dict(averaged)  # loads back into the stage module
    if replicas == 1:
        assert all(torch.equal(averaged[k], states[0][k]) for k in states[0])


def test_counters_do_not_grow_with_repeated_rounds():
    previous = {"bn.num_batches_tracked": torch.tensor(100), "w": torch.zeros(2)}
    states = [{"bn.num_batches_tracked": torch.tensor(100 + n), "w": torch.full((2,), float(n))} for n in (3, 5)]
    averaged = average_states(states, previous)
    assert averaged["bn.num_batches_tracked"].item() == 108  # 100 + 3 + 5, not 211 (sum) or 104 (mean)
    again = average_states([averaged, averaged], averaged)  # nothing trained since: nothing changes
    assert again["bn.num_batches_tracked"].item() == 108 and torch.equal(again["w"], averaged["w"])


def test_dtype_and_device_are_kept():
    previous = {"h": torch.zeros(3, dtype=torch.float16), "d": torch.zeros(2, dtype=torch.float64)}
    states = [
        {"h": torch.tensor([60000.0, 1.0, 2.0], dtype=torch.float16), "d": torch.tensor([1.0, 2.0], dtype=torch.float64)},
        {"h": torch.tensor([60000.0, 3.0, 2.0], dtype=torch.float16), "d": torch.tensor([3.0, 4.0], dtype=torch.float64)},
    ]
    averaged = average_states(states, previous)
    assert averaged["h"].dtype == torch.float16 and averaged["d"].dtype == torch.float64
    assert averaged["h"].tolist() == [60000.0, 2.0, 2.0]  # the half-precision sum (120000) would overflow
    assert averaged["d"].tolist() == [2.0, 3.0] and averaged["d"].device == states[0]["d"].device


def test_mismatched_replicas_are_refused():
    base = {"a": torch.zeros(2), "b": torch.zeros(1)}
    with pytest.raises(AveragingError, match=r"replica 1 does not match replica 0: it lacks \['b'\]"):
        average_states([base, {"a": torch.zeros(2)}], base)
    with pytest.raises(AveragingError, match=r"has unexpected \['c'\]"):
        average_states([base, {**base, "c": torch.zeros(1)}], base)
    with pytest.raises(AveragingError, match=r"'a': replica 1 has torch.float32 \(3,\)"):
        average_states([base, {**base, "a": torch.zeros(3)}], base)
    with pytest.raises(AveragingError, match="the previous state"):
        average_states([base], {"a": torch.zeros(2)})
    with pytest.raises(AveragingError, match="boolean"):
        average_states([{"m": torch.tensor([True])}, {"m": torch.tensor([False])}], {"m": torch.tensor([True])})
    with pytest.raises(AveragingError, match="no replica"):
        average_states([], base)


def test_the_weighted_average_counts_each_replica_by_its_mini_batches():
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in _block().state_dict().items()}
    states = []
    for seed, steps in zip((1, 2, 3), (3, 3, 4)):
        model = _block()
        model.load_state_dict(start)
        states.append(_train(model, steps, seed))
    batches = [329, 331, 340]  # paper Table 6, partition 1
    averaged = average_states(states, start, batches)
    for key, value in averaged.items():
        if value.is_floating_point():
            expected = sum(b * s[key].double() for b, s in zip(batches, states)) / sum(batches)
            torch.testing.assert_close(value, expected.to(value.dtype), msg=key)
        else:  # BN counters still add up the batches every replica trained
            assert int(value) == int(start[key]) + 10
    # a replica that trained on nothing adds nothing; all-zero weights fall back to the plain mean
    idle = average_states([states[0], start], start, [5, 0])
    assert all(torch.equal(idle[k], states[0][k]) for k in idle if idle[k].is_floating_point())
    assert all(torch.equal(a, b) for a, b in zip(average_states(states, start, [0, 0, 0]).values(),
                                                 average_states(states, start).values()))
    with pytest.raises(AveragingError, match="one weight >= 0 per replica"):
        average_states(states, start, [1, 2])


def test_divergence_is_the_relative_spread_of_the_replicas():
    a = {"w": torch.tensor([1.0, 0.0]), "bn.running_var": torch.tensor([100.0]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([3.0, 0.0]), "bn.running_var": torch.tensor([1.0]), "n": torch.tensor(3)}
    # mean (2, 0), each replica 1 away: sqrt((1 + 1) / 2) / 2; BN statistics and integers do not count
    assert divergence([a, b]) == pytest.approx(0.5)
    assert divergence([a, a]) == 0.0 and divergence([a]) == 0.0


def test_summed_updates_move_a_stage_as_far_as_one_machine():
    """Replicas that each took steps on their own batches, summed, land where one machine taking all those steps
    lands when the gradient does not depend on the weights (a linear loss); the plain mean gets only halfway."""
    torch.manual_seed(0)
    start = {k: v.clone() for k, v in nn.Linear(8, 3).state_dict().items()}
    generator = torch.Generator().manual_seed(1)
    batches = [torch.randn(4, 8, generator=generator) for _ in range(5)]

    def steps(state, inputs):
        model = nn.Linear(8, 3)
        model.load_state_dict(state)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for x in inputs:
            optimizer.zero_grad()
            model(x).sum().backward()  # linear in the weight and the bias
            optimizer.step()
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    sequential = steps(start, batches)
    replicas = [steps(start, batches[:2]), steps(start, batches[2:])]  # uneven shares: 2 and 3 batches
    summed = average_states(replicas, start, summed=True)
    mean = average_states(replicas, start)
    for key in start:
        torch.testing.assert_close(summed[key], sequential[key], msg=key)
        torch.testing.assert_close(mean[key] - start[key], (sequential[key] - start[key]) / 2, msg=key)
    idle = average_states([replicas[0], start], start, summed=True)  # a replica that trained on nothing adds nothing
    for key in start:
        torch.testing.assert_close(idle[key], replicas[0][key], msg=key)
    # BN running statistics are estimates of the data: they stay a mean; learnt weights add up their updates
    stats = {"bn.running_mean": torch.tensor([2.0]), "w": torch.tensor([1.0]), "bn.num_batches_tracked": torch.tensor(7)}
    other = {"bn.running_mean": torch.tensor([4.0]), "w": torch.tensor([3.0]), "bn.num_batches_tracked": torch.tensor(9)}
    before = {"bn.running_mean": torch.zeros(1), "w": torch.zeros(1), "bn.num_batches_tracked": torch.tensor(5)}
    both = average_states([stats, other], before, summed=True)
    assert both["bn.running_mean"].item() == 3.0 and both["w"].item() == 4.0 and both["bn.num_batches_tracked"].item() == 11
    with pytest.raises(AveragingError, match="summed updates take no weights"):
        average_states(replicas, start, [1, 2], summed=True)


def test_a_rejoined_replica_counts_only_its_own_updates():
    """A node that rejoined mid-period from a copy of a live replica: the donor's updates before the copy are in
    both states, and must be counted once (summed weights and BN counters alike)."""
    previous = {"w": torch.zeros(2), "bn.num_batches_tracked": torch.tensor(100)}
    copy = {"w": torch.tensor([1.0, 0.0]), "bn.num_batches_tracked": torch.tensor(103)}  # donor after 3 batches
    donor = {"w": torch.tensor([3.0, 0.0]), "bn.num_batches_tracked": torch.tensor(106)}  # 3 more since the copy
    rejoined = {"w": torch.tensor([1.0, 5.0]), "bn.num_batches_tracked": torch.tensor(104)}  # 1 of its own
    summed = average_states([donor, rejoined], previous, summed=True, bases=[None, copy])
    assert summed["w"].tolist() == [3.0, 5.0] and summed["bn.num_batches_tracked"].item() == 107
    naive = average_states([donor, rejoined], previous, summed=True)
    assert naive["w"].tolist() == [4.0, 5.0] and naive["bn.num_batches_tracked"].item() == 110  # the copy twice
    with pytest.raises(AveragingError, match="one base per replica"):
        average_states([donor, rejoined], previous, bases=[None])
