"""Probes on frozen features: L2 logistic regression (L-BFGS, strength by cross-validation) and kNN."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import nn

from engine.eval_config import EvalConfig, Progress
from engine.lr_schedule import cosine_lr

log = logging.getLogger(__name__)
STRENGTHS = tuple(float(c) for c in np.logspace(-4, 2, 7))
"""Inverse L2 strengths C tried by cross-validation (sklearn's convention: larger C, weaker penalty)."""
KNN_TEMPERATURE = 0.07
"""Temperature of the similarity-weighted kNN vote (Wu et al. 2018, the SSL field's kNN monitor)."""


def fit_linear(features: torch.Tensor, labels: torch.Tensor, num_classes: int, config: EvalConfig,
               on_progress: Progress | None = None) -> nn.Linear:
    """A linear classifier on raw features, (N, D) -> (N, num_classes) logits.

    Features are standardised with the training part's statistics, so encoders with very different
    feature scales (random init vs trained) meet the same penalty; the standardisation is folded
    into the returned layer's weights, so it applies to raw backbone features.
    """
    center = features.mean(dim=0)
    scale = features.std(dim=0).clamp_min(1e-6)
    x = (features - center) / scale
    if config.linear == "adam":
        layer = _adam_probe(x, labels, num_classes, config, on_progress)
    else:
        layer = logistic_regression(x, labels, num_classes, config.seed)
        if on_progress:
            on_progress("linear probe", 1, 1)
    with torch.no_grad():
        weight = layer.weight / scale  # W (x - c) / s + b  =  (W / s) x + (b - (W / s) c)
        bias = layer.bias - weight @ center
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer.requires_grad_(False).eval()


def logistic_regression(x: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int) -> nn.Linear:
    """Multinomial logistic regression with an L2 penalty, C from ``STRENGTHS`` by stratified k-fold
    cross-validation on these (training) rows only, then refitted on all of them.

    C is chosen by held-out log-loss rather than accuracy: accuracy on a few images per fold is
    coarse and ties often, log-loss varies smoothly with C and also gives calibrated scores, which
    ``litesrl predict`` reports."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    y = labels.numpy()
    folds = min(5, int(np.bincount(y, minlength=num_classes).min()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        if folds >= 2:
            model = LogisticRegressionCV(Cs=list(STRENGTHS), cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                         max_iter=2000, tol=1e-5, scoring="neg_log_loss", n_jobs=1)
        else:  # one image in some class: nothing to cross-validate on; sklearn's default strength
            model = LogisticRegression(C=1.0, max_iter=2000, tol=1e-5)
        model.fit(x.double().numpy(), y)
    log.debug("logistic regression: C = %g", float(np.atleast_1d(getattr(model, "C_", 1.0))[0]))
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("logistic regression stopped at its iteration limit before converging")
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if coef.shape[0] == 1:  # two classes: sklearn keeps one logit; softmax([0, z]) = sigmoid(z)
        coef = np.concatenate([np.zeros_like(coef), coef])
        intercept = np.concatenate([np.zeros_like(intercept), intercept])
    layer = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(coef).float())
        layer.bias.copy_(torch.from_numpy(intercept).float())
    return layer


def _adam_probe(x: torch.Tensor, labels: torch.Tensor, num_classes: int, config: EvalConfig,
                on_progress: Progress | None) -> nn.Linear:
    """The earlier probe: Adam, mini-batches of ``batch_size``, cosine decay over ``epochs``."""
    torch.manual_seed(config.seed)
    layer = nn.Linear(x.shape[1], num_classes)
    optimizer = torch.optim.Adam(layer.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    total = config.epochs * max(1, -(-len(x) // config.batch_size))
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), config.batch_size):
            index = order[start : start + config.batch_size]
            for group in optimizer.param_groups:
                group["lr"] = cosine_lr(step, total, config.lr)
            loss = nn.functional.cross_entropy(layer(x[index]), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
        if on_progress:
            on_progress("linear classifier", epoch + 1, config.epochs)
    return layer


def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, num_classes: int, k: int) -> torch.Tensor:
    """Labels of ``test_x`` by a vote of the ``k`` most cosine-similar training features, each vote
    weighted by exp(similarity / 0.07) (Wu et al. 2018)."""
    train = nn.functional.normalize(train_x.float(), dim=1)
    test = nn.functional.normalize(test_x.float(), dim=1)
    k = min(k, len(train))
    predicted = []
    for start in range(0, len(test), 1024):  # (1024, N_train) similarities at a time
        similarity, index = (test[start : start + 1024] @ train.T).topk(k, dim=1)
        votes = torch.zeros(len(similarity), num_classes)
        votes.scatter_add_(1, train_y[index], (similarity / KNN_TEMPERATURE).exp())
        predicted.append(votes.argmax(dim=1))
    return torch.cat(predicted)
