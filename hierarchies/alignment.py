"""Alignment between a pretraining label function and the target labels.

All metrics are computed on examples (one pretraining label and one target
label per example), so class frequencies count as they do in training.
"""

from __future__ import annotations

import numpy as np

# sklearn is imported where it is used: `import hierarchies` (every `granularity`
# command, every Ray worker) should not pay its ~2 s import.


def conditional_entropy_bits(target: np.ndarray, pretrain: np.ndarray) -> float:
    """H(target | pretrain) in bits: 0 when every pretraining class lies inside one target class."""
    target = np.asarray(target, dtype=np.int64)
    pretrain = np.asarray(pretrain, dtype=np.int64)
    if target.size == 0:
        return 0.0
    from sklearn import metrics as skm

    contingency = skm.cluster.contingency_matrix(pretrain, target).astype(np.float64)
    total = contingency.sum()
    row_totals = contingency.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(contingency > 0, contingency / row_totals, 1.0)
        entropy = -(contingency / total * np.log2(ratio)).sum()
    # max() keeps -0.0 (the sum of zero terms); adding 0.0 turns it into 0.0.
    return float(max(entropy, 0.0) + 0.0)


def purity(target: np.ndarray, pretrain: np.ndarray) -> float:
    """Fraction of examples whose pretraining class's majority target class is their own."""
    target = np.asarray(target, dtype=np.int64)
    if target.size == 0:
        return 1.0
    from sklearn import metrics as skm

    contingency = skm.cluster.contingency_matrix(np.asarray(pretrain), target)
    return float(contingency.max(axis=1).sum() / target.size)


def alignment_metrics(pretrain: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """All alignment metrics of `pretrain` labels against `target` labels, per example.

    Keys follow the MLflow contract without the `align/` prefix:
    cond_entropy (bits), purity, nmi, ami, ari.

    >>> m = alignment_metrics(np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]))
    >>> m["cond_entropy"], m["purity"]
    (0.0, 1.0)
    """
    pretrain = np.asarray(pretrain, dtype=np.int64)
    target = np.asarray(target, dtype=np.int64)
    if pretrain.shape != target.shape:
        raise ValueError(
            f"pretrain labels {pretrain.shape} and target labels {target.shape} differ in shape"
        )
    from sklearn import metrics as skm

    return {
        "cond_entropy": conditional_entropy_bits(target, pretrain),
        "purity": purity(target, pretrain),
        "nmi": float(skm.normalized_mutual_info_score(target, pretrain)),
        "ami": float(skm.adjusted_mutual_info_score(target, pretrain)),
        "ari": float(skm.adjusted_rand_score(target, pretrain)),
    }


def examples_per_class(labels: np.ndarray) -> dict[str, float]:
    """Mean, min and max number of examples per class present in `labels`."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    counts = counts[counts > 0]
    if counts.size == 0:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": float(counts.mean()), "min": float(counts.min()), "max": float(counts.max())}
