"""The field's evaluation protocol: label fractions x label splits, an encoder against a baseline, paired per split."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace

import torch

from engine.augment.pipelines import channel_stats
from engine.data.folder import ImageSet
from engine.device import resolve_device
from engine.errors import ConfigError
from engine.eval_config import EvalConfig, Progress
from engine.evaluate import (
    check_channels,
    check_classes,
    check_fraction,
    evaluate,
    load_backbone,
    run_module,
    split,
)
from engine.model import ModelConfig
from engine.probe import fit_linear, knn_predict


@dataclass
class Scores:
    """Accuracies of one encoder, one per split (same order as ``ProtocolResult.seeds``)."""

    linear: list[float] = field(default_factory=list)
    """Linear probe (freeze) or fine-tuned network (finetune)."""
    knn: list[float] = field(default_factory=list)
    """kNN probe (freeze mode with kNN on), else empty."""


@dataclass
class FractionTable:
    """One table of the paper's kind (Tables 2-4): every encoder at one label fraction."""

    fraction: float
    train_images: list[int]
    test_images: list[int]
    scores: dict[str, Scores]
    """Encoder label -> its per-split scores."""

    def difference(self, encoder: str, baseline: str) -> Scores:
        """Per-split paired differences ``encoder - baseline``: both were scored on the same splits,
        so the split-to-split swing common to both cancels."""
        a, b = self.scores[encoder], self.scores[baseline]
        return Scores([x - y for x, y in zip(a.linear, b.linear)], [x - y for x, y in zip(a.knn, b.knn)])


@dataclass
class ProtocolResult:
    """Everything one protocol run measured; JSON-ready."""

    mode: str
    encoder: str
    baseline: str | None
    seeds: list[int]
    classes: list[str]
    tables: list[FractionTable]
    config: dict

    def to_json(self) -> dict:
        data = asdict(self)
        if self.baseline:
            for table, raw in zip(self.tables, data["tables"]):
                raw["difference"] = asdict(table.difference(self.encoder, self.baseline))
        return data


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def run_protocol(
    images: ImageSet,
    config: EvalConfig,
    fractions: list[float],
    seeds: int,
    checkpoint: str | None,
    baseline: str | None,
    model_config: ModelConfig,
    test_images: ImageSet | None = None,
    device: str = "auto",
    on_progress: Progress | None = None,
) -> ProtocolResult:
    """Score the encoder of ``checkpoint`` and the ``baseline`` (None: random init) at every fraction
    on ``seeds`` label splits each (seeds ``config.seed`` ... ``config.seed + seeds - 1``).

    In freeze mode each encoder's features are computed once (normalised with its checkpoint's
    statistics, or the training folder's, which need no labels) and only the probes are refitted
    per split; the random-init encoder is the same network (seeded by ``config.seed``) on every
    split, so the spread measures the splits alone. Fine-tuning trains a network per split.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if not fractions:
        raise ConfigError("give at least one train fraction")
    if test_images is not None:
        check_classes(images, test_images)
    for fraction in fractions:
        check_fraction(images, fraction)
    seed_list = [config.seed + i for i in range(seeds)]
    encoders = {}
    main_name = None
    for role, path in (("encoder", checkpoint), ("baseline", baseline)):
        backbone, norm, name, _ = load_backbone(path, model_config, config.seed)
        if role == "baseline" and name == main_name:
            continue  # random init against random init: nothing to compare
        check_channels(backbone, images)
        encoders[name] = (path, backbone, norm)
        main_name = main_name or name
    names = list(encoders)
    tables = [FractionTable(f, [], [], {name: Scores() for name in names}) for f in fractions]
    target = resolve_device(device)
    total = len(names) * len(fractions) * seeds
    done = 0
    for name, (path, backbone, norm) in encoders.items():
        features = test_features = None
        if config.mode == "freeze":
            mean, std = norm if norm is not None else channel_stats(images.images)
            backbone = backbone.to(target)
            features = run_module(backbone, images.images, mean, std, config.image_size, target)
            if test_images is not None:
                test_features = run_module(backbone, test_images.images, mean, std, config.image_size, target)
        for table in tables:
            for seed in seed_list:
                split_config = replace(config, train_fraction=table.fraction, seed=seed)
                if features is None:
                    result = evaluate(images, split_config, path, model_config, device, test_images=test_images)
                    linear, knn, counts = result.overall_accuracy, None, (result.train_images, result.test_images)
                else:
                    linear, knn, counts = _probe_split(images, test_images, features, test_features, split_config)
                table.scores[name].linear.append(linear)
                if knn is not None:
                    table.scores[name].knn.append(knn)
                if name == names[0]:
                    table.train_images.append(counts[0])
                    table.test_images.append(counts[1])
                done += 1
                if on_progress:
                    on_progress(f"{name[:40]} @ {table.fraction:g}", done, total)
    return ProtocolResult(config.mode, names[0], names[1] if len(names) > 1 else None, seed_list,
                          list(images.classes), tables, asdict(config))


def _probe_split(images, test_images, features, test_features, config: EvalConfig) -> tuple[float, float | None, tuple[int, int]]:
    train_idx, test_idx = split(images, test_images, config)
    train_x, train_y = features[train_idx], images.labels[train_idx]
    if test_idx is None:
        test_x, test_y = test_features, test_images.labels
    else:
        test_x, test_y = features[test_idx], images.labels[test_idx]
    classes = len(images.classes)
    head = fit_linear(train_x, train_y, classes, config)
    with torch.no_grad():
        linear = float((head(test_x).argmax(dim=1) == test_y).float().mean())
    knn = float((knn_predict(train_x, train_y, test_x, classes, config.knn_k) == test_y).float().mean()) if config.knn_k else None
    return linear, knn, (len(train_idx), len(test_y))


def table_rows(result: ProtocolResult, table: FractionTable) -> list[tuple[str, str, str, str]]:
    """(encoder, linear %, kNN %, linear % per split) rows of one fraction, mean ± sample std,
    ending with the paired difference against the baseline."""

    def cells(scores: Scores, signed: bool = False) -> tuple[str, str, str]:
        form = "{:+.1f}" if signed else "{:.1f}"

        def summary(values: list[float]) -> str:
            if not values:
                return "-"
            mean, std = mean_std(values)
            return f"{form.format(100 * mean)} ± {100 * std:.1f}"

        return summary(scores.linear), summary(scores.knn), " ".join(form.format(100 * v) for v in scores.linear)

    rows = [(name, *cells(scores)) for name, scores in table.scores.items()]
    if result.baseline:
        rows.append(("paired difference", *cells(table.difference(result.encoder, result.baseline), signed=True)))
    return rows


def protocol_markdown(result: ProtocolResult) -> str:
    """The tables as Markdown (one per fraction), as BENCHMARKS.md shows them."""
    linear = "fine-tuned" if result.mode == "finetune" else f"linear ({result.config['linear']})"
    lines = []
    for table in result.tables:
        lines += [f"**{table.fraction:.0%} of the training labels** "
                  f"({table.train_images[0]} training / {table.test_images[0]} test "
                  f"images, {len(result.seeds)} splits, mean ± std %)", "",
                  f"| encoder | {linear} | kNN (k={result.config['knn_k']}) | {linear} per split |", "|---|---:|---:|---|"]
        lines += [f"| {' | '.join(row)} |" for row in table_rows(result, table)]
        lines.append("")
    return "\n".join(lines)
