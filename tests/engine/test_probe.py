"""Probes on frozen features: the logistic regression is well-posed and folds its standardisation; kNN votes."""

import numpy as np
import torch

from engine.eval_config import EvalConfig
from engine.probe import STRENGTHS, fit_linear, knn_predict, logistic_regression


def clusters(n_per_class=30, classes=3, dim=16, spread=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, dim, generator=generator) * 3
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    features = centres[labels] + spread * torch.randn(len(labels), dim, generator=generator)
    return features * 50 + 7, labels  # a large scale and offset: the probe must standardise


def test_logistic_regression_separates_clusters_and_applies_to_raw_features():
    x, y = clusters()
    head = fit_linear(x, y, 3, EvalConfig())
    assert float((head(x).argmax(dim=1) == y).float().mean()) == 1.0
    test_x, test_y = clusters(seed=0, n_per_class=10)
    assert float((head(test_x).argmax(dim=1) == test_y).float().mean()) >= 0.95


def test_standardisation_folded_into_the_layer_equals_the_fit_on_standardised_features():
    x, y = clusters(spread=3.0)  # overlapping: the penalty matters
    head = fit_linear(x, y, 3, EvalConfig())
    z = (x - x.mean(dim=0)) / x.std(dim=0)
    direct = logistic_regression(z, y, 3, seed=0)
    torch.testing.assert_close(head(x), direct(z), atol=1e-3, rtol=1e-4)


def test_cross_validation_penalises_labels_the_features_cannot_predict():
    from sklearn.linear_model import LogisticRegression

    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(60, 32, generator=generator)  # labels independent of the features
    labels = torch.arange(3).repeat(20)
    chosen = logistic_regression(noise, labels, 3, seed=0)
    weakest = LogisticRegression(C=STRENGTHS[-1], max_iter=5000).fit(noise.double().numpy(), labels.numpy())
    assert float(chosen.weight.norm()) < 0.1 * float(np.linalg.norm(weakest.coef_))
    x, y = clusters(spread=0.3)
    z = (x - x.mean(dim=0)) / x.std(dim=0)
    assert float(logistic_regression(z, y, 3, seed=0).weight.norm()) > 10 * float(chosen.weight.norm())


def test_the_probe_is_deterministic_and_independent_of_epochs_and_learning_rate():
    x, y = clusters(spread=3.0)
    a = fit_linear(x, y, 3, EvalConfig(seed=0, epochs=10, lr=1.0))
    b = fit_linear(x, y, 3, EvalConfig(seed=0, epochs=500, lr=1e-5))
    assert torch.allclose(a.weight, b.weight) and torch.allclose(a.bias, b.bias)


def test_two_classes_give_two_logits():
    x, y = clusters(classes=2)
    head = fit_linear(x, y, 2, EvalConfig())
    assert head.weight.shape == (2, 16)
    assert float((head(x).argmax(dim=1) == y).float().mean()) == 1.0


def test_adam_probe_still_available():
    x, y = clusters()
    head = fit_linear(x, y, 3, EvalConfig(linear="adam", epochs=100, lr=1e-2))
    assert float((head(x).argmax(dim=1) == y).float().mean()) == 1.0


def test_knn_votes_by_cosine_similarity():
    train = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    test = torch.tensor([[5.0, 0.2], [0.3, 7.0]])  # scale does not matter, direction does
    assert knn_predict(train, labels, test, 2, k=3).tolist() == [0, 1]
    assert knn_predict(train, labels, test, 2, k=100).tolist() == [0, 1]  # k larger than the set is clipped
