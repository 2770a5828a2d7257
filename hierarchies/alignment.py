"""Alignment between a pretraining label function and the target labels.

All metrics are computed on examples (one pretraining label and one target
label per example), so class frequencies count as they do in training.
"""

from __future__ import annotations

import math

import numpy as np

# The clustering scores (NMI, AMI, ARI) are computed here with numpy, to the
# formulas of scikit-learn's `metrics.cluster` (its defaults: arithmetic-mean
# normalisation, AMI's expected mutual information under the hypergeometric
# model), because every trial reports them and importing sklearn cost a Ray
# worker ~1.3 s of its first trial. tests/test_hierarchies_alignment.py checks
# them against sklearn.


class _Contingency:
    """The nonzero cells of the contingency table of two labelings, and its margins."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray) -> None:
        row_classes, row_index = np.unique(rows, return_inverse=True)
        col_classes, col_index = np.unique(cols, return_inverse=True)
        self.shape = (len(row_classes), len(col_classes))
        # Sparse on purpose: an ImageNet-21k level against its target is 21k x 1k cells.
        cells, counts = np.unique(
            row_index.astype(np.int64) * self.shape[1] + col_index, return_counts=True
        )
        self.i, self.j, self.n = cells // self.shape[1], cells % self.shape[1], counts
        self.a = np.bincount(self.i, weights=counts, minlength=self.shape[0]).astype(np.int64)
        self.b = np.bincount(self.j, weights=counts, minlength=self.shape[1]).astype(np.int64)
        self.total = int(counts.sum())


def _entropy(margin: np.ndarray) -> float:
    """Natural-log entropy of a labeling from its class counts (sklearn's `_entropy`)."""
    if margin.size <= 1:
        return 0.0
    total = margin.sum()
    return float(-np.sum((margin / total) * (np.log(margin) - math.log(total))))


def _mutual_info(c: _Contingency) -> float:
    """Mutual information in nats (sklearn's `mutual_info_score`)."""
    if c.shape[0] == 1 or c.shape[1] == 1:
        return 0.0
    p = c.n / c.total
    outer = c.a[c.i] * c.b[c.j]
    log_outer = -np.log(outer) + 2 * math.log(c.total)
    mi = p * (np.log(c.n) - math.log(c.total)) + p * log_outer
    mi = np.where(np.abs(mi) < np.finfo(mi.dtype).eps, 0.0, mi)
    return float(np.clip(mi.sum(), 0.0, None))


def _expected_mutual_info(c: _Contingency) -> float:
    """E[MI] of two labelings with these margins under random permutation (Vinh et al. 2010).

    The sum over cells (i, j) and their possible counts nij of
    nij/N * log(N nij / (a_i b_j)) * P(nij), P hypergeometric; one numpy pass
    per class of the labeling with fewer classes.
    """
    a, b, total = c.a, c.b, c.total
    if a.size == 1 or b.size == 1:
        return 0.0
    if a.size > b.size:
        a, b = b, a  # symmetric in the two labelings; loop over the shorter margin
    log_fact = np.fromiter(map(math.lgamma, range(1, total + 2)), float, total + 1)  # log k!
    emi = 0.0
    for a_i in a:
        start = np.maximum(1, a_i - total + b)
        end = np.minimum(a_i, b) + 1
        width = int((end - start).max(initial=0))
        if width <= 0:
            continue
        nij = start[:, None] + np.arange(width)[None, :]
        valid = nij < end[:, None]
        nij = np.where(valid, nij, 1)
        bj = b[:, None]
        log_p = (
            log_fact[a_i]
            + log_fact[bj]
            + log_fact[total - a_i]
            + log_fact[total - bj]
            - log_fact[nij]
            - log_fact[total]
            - log_fact[a_i - nij]
            - log_fact[np.where(valid, bj - nij, 0)]
            - log_fact[np.where(valid, total - a_i - bj + nij, 0)]
        )
        term = nij / total * (math.log(total) + np.log(nij) - math.log(a_i) - np.log(bj))
        emi += float(np.sum(term * np.exp(np.where(valid, log_p, -np.inf))))
    return emi


def _clamp_away_from_zero(x: float) -> float:
    """sklearn's guard against 0/0 in AMI: keep the sign, at least one epsilon in size."""
    eps = np.finfo("float64").eps
    return min(x, -eps) if x < 0 else max(x, eps)


def clustering_scores(target: np.ndarray, pretrain: np.ndarray) -> dict[str, float]:
    """NMI, AMI and ARI of two labelings (symmetric; equal to sklearn's defaults).

    >>> s = clustering_scores(np.array([0, 0, 1, 1]), np.array([5, 5, 7, 7]))
    >>> s["nmi"], s["ari"]
    (1.0, 1.0)
    """
    c = _Contingency(np.asarray(target), np.asarray(pretrain))
    n_target, n_pretrain = c.shape
    if n_target == n_pretrain == 1 or c.total == 0:
        return {"nmi": 1.0, "ami": 1.0, "ari": 1.0}  # neither labeling splits the data
    mi = _mutual_info(c)
    mean_entropy = (_entropy(c.a) + _entropy(c.b)) / 2
    nmi = 0.0 if mi == 0 else mi / mean_entropy
    if n_target == 1 or n_pretrain == 1:
        ami = 0.0
    else:
        emi = _expected_mutual_info(c)
        ami = _clamp_away_from_zero(mi - emi) / _clamp_away_from_zero(mean_entropy - emi)
    # Pair counts in Python integers (sklearn's pair_confusion_matrix): no overflow.
    squares = int(np.sum(c.n**2))  # int64 holds it up to 3e9 examples
    same_both = squares - c.total
    same_target = int(np.sum(c.a**2)) - squares
    same_pretrain = int(np.sum(c.b**2)) - squares
    neither = c.total**2 - same_target - same_pretrain - squares
    if same_target == 0 and same_pretrain == 0:
        ari = 1.0
    else:
        ari = (
            2.0
            * (same_both * neither - same_pretrain * same_target)
            / (
                (same_both + same_pretrain) * (same_pretrain + neither)
                + (same_both + same_target) * (same_target + neither)
            )
        )
    return {"nmi": float(nmi), "ami": float(ami), "ari": float(ari)}


def conditional_entropy_bits(target: np.ndarray, pretrain: np.ndarray) -> float:
    """H(target | pretrain) in bits: 0 when every pretraining class lies inside one target class."""
    target = np.asarray(target, dtype=np.int64)
    pretrain = np.asarray(pretrain, dtype=np.int64)
    if target.size == 0:
        return 0.0
    c = _Contingency(pretrain, target)
    # H(T | P) = -sum p(i, j) log2 p(j | i), over the nonzero cells
    entropy = -np.sum(c.n / c.total * np.log2(c.n / c.a[c.i]))
    # max() keeps -0.0 (the sum of zero terms); adding 0.0 turns it into 0.0.
    return float(max(entropy, 0.0) + 0.0)


def purity(target: np.ndarray, pretrain: np.ndarray) -> float:
    """Fraction of examples whose pretraining class's majority target class is their own."""
    target = np.asarray(target, dtype=np.int64)
    if target.size == 0:
        return 1.0
    c = _Contingency(np.asarray(pretrain), target)
    majority = np.zeros(c.shape[0], dtype=np.int64)
    np.maximum.at(majority, c.i, c.n)
    return float(majority.sum() / target.size)


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
    return {
        "cond_entropy": conditional_entropy_bits(target, pretrain),
        "purity": purity(target, pretrain),
        **clustering_scores(target, pretrain),
    }


def examples_per_class(labels: np.ndarray) -> dict[str, float]:
    """Mean, min and max number of examples per class present in `labels`."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    counts = counts[counts > 0]
    if counts.size == 0:
        return {"mean": 0.0, "min": 0.0, "max": 0.0}
    return {"mean": float(counts.mean()), "min": float(counts.min()), "max": float(counts.max())}
