"""Symmetric negative cosine with stop-gradient (paper eq. 5) in the sequential form."""

import torch
import torch.nn.functional as F

from engine.loss import SymmetricNegativeCosine, collapse_indicator
from engine.model import ModelConfig, build_model


def test_no_gradient_flows_through_the_stop_gradient_target():
    e = torch.randn(8, 16, requires_grad=True)
    p = torch.randn(8, 16, requires_grad=True)
    SymmetricNegativeCosine()(p, e).backward()
    assert e.grad is None or torch.count_nonzero(e.grad) == 0
    assert torch.count_nonzero(p.grad) > 0


def test_gradient_reaches_the_encoder_only_through_the_predictor():
    torch.manual_seed(0)
    model = build_model(ModelConfig()).train()
    e = model.projection(model.backbone(torch.randn(4, 3, 32, 32)))
    e.retain_grad()
    loss = model.head(e)
    loss.backward()
    # the encoder output's gradient equals the gradient through the predictor branch alone
    e2 = e.detach().clone().requires_grad_(True)
    p = model.head.predictor(e2)
    target = torch.cat(e.detach().chunk(2)[::-1])
    (-F.cosine_similarity(p, target, dim=1).mean()).backward()
    assert torch.allclose(e.grad, e2.grad, atol=1e-6)


def test_value_lies_in_minus_one_to_one_and_reaches_the_bounds():
    loss = SymmetricNegativeCosine()
    for _ in range(20):
        assert -1.0 <= loss(torch.randn(6, 5), torch.randn(6, 5)).item() <= 1.0
    a = torch.randn(3, 5)
    e = torch.cat([a, a])
    assert torch.isclose(loss(e, e), torch.tensor(-1.0))
    assert torch.isclose(loss(-e, e), torch.tensor(1.0))


def test_sequential_form_equals_the_two_branch_form_with_bn_in_eval_mode():
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    x_a, x_b = torch.randn(3, 3, 32, 32), torch.randn(3, 3, 32, 32)
    sequential = model(torch.cat([x_a, x_b])).loss

    def encode(x):
        return model.projection(model.backbone(x))

    e_a, e_b = encode(x_a), encode(x_b)
    p_a, p_b = model.head.predictor(e_a), model.head.predictor(e_b)
    two_branch = 0.5 * -F.cosine_similarity(p_a, e_b.detach()).mean() + 0.5 * -F.cosine_similarity(p_b, e_a.detach()).mean()
    assert torch.allclose(sequential, two_branch, atol=1e-6)


def test_collapse_indicator_is_zero_for_collapse_and_about_one_over_sqrt_d_when_spread():
    assert collapse_indicator(torch.ones(64, 128)) < 1e-6
    spread = collapse_indicator(torch.randn(4096, 128))
    assert abs(spread - 128 ** -0.5) < 0.01
