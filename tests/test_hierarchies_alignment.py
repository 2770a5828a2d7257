"""The alignment metrics' own NMI / AMI / ARI equal scikit-learn's, and the metrics mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from hierarchies.alignment import alignment_metrics, clustering_scores

SKLEARN = {
    "nmi": skm.normalized_mutual_info_score,
    "ami": skm.adjusted_mutual_info_score,
    "ari": skm.adjusted_rand_score,
}


def _labelings(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A target and a pretraining labeling of various shapes: nested, noisy, unrelated, skewed."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    fine = rng.integers(0, int(rng.integers(1, 600)), size=n)
    case = seed % 4
    if case == 0:  # the target is a coarsening of the fine labels (a hierarchy level)
        target = fine // int(rng.integers(1, 50))
    elif case == 1:  # a coarsening with some labels flipped
        target = fine % int(rng.integers(1, 20))
        flip = rng.random(n) < 0.2
        target[flip] = rng.integers(0, 20, size=int(flip.sum()))
    elif case == 2:  # unrelated
        target = rng.integers(0, int(rng.integers(1, 30)), size=n)
    else:  # skewed class sizes, non-contiguous label values
        target = (rng.zipf(1.5, size=n) % 40) * 7
    return target, fine


@pytest.mark.parametrize("seed", range(40))
def test_clustering_scores_equal_sklearn(seed: int) -> None:
    target, pretrain = _labelings(seed)
    ours = clustering_scores(target, pretrain)
    for name, reference in SKLEARN.items():
        # AMI's expected MI is a sum of exp(differences of log-factorials ~1e4): both
        # implementations carry ~1e-12 of rounding there, amplified when AMI is near 0.
        assert ours[name] == pytest.approx(reference(target, pretrain), abs=1e-9), name


@pytest.mark.parametrize(
    "target, pretrain",
    [
        ([], []),  # no examples
        ([3, 3, 3], [1, 1, 1]),  # neither splits the data
        ([0, 0, 1, 1], [0, 0, 0, 0]),  # one labeling is a single class
        ([0, 1, 2, 3], [0, 1, 2, 3]),  # all singletons
        ([0, 0, 1, 1], [1, 1, 0, 0]),  # a relabeling
    ],
)
def test_clustering_scores_edge_cases_equal_sklearn(target: list, pretrain: list) -> None:
    t, p = np.asarray(target, dtype=np.int64), np.asarray(pretrain, dtype=np.int64)
    ours = clustering_scores(t, p)
    for name, reference in SKLEARN.items():
        assert ours[name] == pytest.approx(reference(t, p), abs=1e-12), name


def test_nested_labels_have_zero_conditional_entropy_and_full_purity() -> None:
    fine = np.arange(40) % 8
    m = alignment_metrics(fine, fine // 2)  # every fine class inside one target class
    assert m["cond_entropy"] == 0.0 and m["purity"] == 1.0
    crossed = alignment_metrics(np.arange(40) % 2, np.arange(40) // 20)  # independent halves
    assert crossed["cond_entropy"] == pytest.approx(1.0) and crossed["purity"] == 0.5


def test_alignment_metrics_do_not_import_sklearn() -> None:
    import subprocess
    import sys

    code = (
        "import sys, numpy as np; from hierarchies import alignment_metrics;"
        "alignment_metrics(np.arange(50) % 5, np.arange(50) % 2);"
        "print('sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
