"""Figures people would rather look at than read: loss curve, confusion matrix, t-SNE of features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.io import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write(path, lambda handle: handle.write(buffer.getvalue()))


def loss_curve(steps: Sequence[int], losses: Sequence[float], collapse: Sequence[float], path: Path) -> Path:
    """Loss (left axis) and the collapse indicator (right axis) over steps."""
    plt = _pyplot()
    fig, left = plt.subplots(figsize=(7, 3.5))
    left.plot(steps, losses, color="tab:blue", linewidth=1, label="loss")
    left.set_xlabel("step")
    left.set_ylabel("negative cosine loss", color="tab:blue")
    right = left.twinx()
    right.plot(steps, collapse, color="tab:orange", linewidth=1, label="std of normalised e")
    right.set_ylabel("collapse indicator (0 = collapsed)", color="tab:orange")
    left.set_title("Lite-SRL pretraining")
    return _save(fig, path)


def confusion_matrix_png(matrix: np.ndarray, classes: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix with counts in each cell."""
    plt = _pyplot()
    totals = matrix.sum(axis=1, keepdims=True).clip(min=1)
    share = matrix / totals
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for row in range(len(classes)):
        for col in range(len(classes)):
            axis.text(col, row, str(int(matrix[row, col])), ha="center", va="center",
                      color="white" if share[row, col] > 0.5 else "black", fontsize=8)
    fig.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="share of true class")
    axis.set_title(title)
    return _save(fig, path)


def tsne_png(features: np.ndarray, labels: np.ndarray, classes: Sequence[str], path: Path, title: str, seed: int = 0) -> Path:
    """2-D t-SNE of ``features`` coloured by class (paper Fig. 8)."""
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    for index, name in enumerate(classes):
        chosen = labels == index
        axis.scatter(points[chosen, 0], points[chosen, 1], s=8, color=cmap(index % cmap.N), label=name)
    axis.legend(markerscale=2, fontsize=7, loc="best")
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_title(title)
    return _save(fig, path)


def confusion_text(matrix: np.ndarray, classes: Sequence[str]) -> str:
    """Confusion matrix as an aligned text table (rows = true class)."""
    width = max(6, max(len(c) for c in classes) + 1)
    header = "true\\pred".ljust(width) + "".join(c[:width - 1].rjust(width) for c in classes)
    rows = [name.ljust(width) + "".join(str(int(v)).rjust(width) for v in matrix[i]) for i, name in enumerate(classes)]
    return "\n".join([header] + rows) + "\n"
