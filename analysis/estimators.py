"""The estimators over the tidy trial table, under one name (re-exports; each lives in its module).

scikit-learn style: settings in ``__init__``, ``fit(df)`` returns ``self`` and
sets result attributes ending in ``_``. ``df`` is what ``analysis.load.load_runs``
returns (one row per finished trial). Seeds are paired replicates: seed s has
the same data subset and init in every arm, so every comparison is made within
a seed and every bootstrap resamples whole seeds.

Rows whose metric is NaN (a failed or diverged trial that still finished) are
dropped and counted in ``n_dropped_``; missing cells are left out of the cell's
statistics; a cell with one seed gets a mean but NaN interval bounds.

Example:
    >>> from testing.simulate import simulate_sweep
    >>> df = simulate_sweep(seeds=5, random_state=0)
    >>> UCurve().fit(df).results_[["hierarchy", "optimum", "is_u"]]  # doctest: +SKIP

Modules: ``analysis.ucurve`` (UCurve, OptimumFit, fit_optimum), ``analysis.gains``
(BaselineGain, target_classes, hard_example_verdict), ``analysis.size`` (SizeGranularity),
``analysis.kinds`` (HierarchyComparison), ``analysis.alignment_study`` (AlignmentStudy) and
``analysis.trial_table`` (the helpers they share). ``from analysis import estimators as est;
est.UCurve`` is the notebook API's spelling, so this module keeps every public name.
"""

from __future__ import annotations

from analysis.alignment_study import AlignmentStudy
from analysis.gains import BaselineGain, hard_example_verdict, target_classes
from analysis.kinds import HierarchyComparison
from analysis.size import SizeGranularity
from analysis.trial_table import (
    FEW_SEEDS,
    GROUP_BY,
    PAIR_KEYS,
    SINGLE_SEED_NOTE,
    adjust_table,
    examples_per_class_table,
    finer_domain,
    prepare_trials,
    summarise_seeds,
)
from analysis.ucurve import OptimumFit, UCurve, fit_optimum

__all__ = [
    "FEW_SEEDS",
    "GROUP_BY",
    "PAIR_KEYS",
    "SINGLE_SEED_NOTE",
    "AlignmentStudy",
    "BaselineGain",
    "HierarchyComparison",
    "OptimumFit",
    "SizeGranularity",
    "UCurve",
    "adjust_table",
    "examples_per_class_table",
    "finer_domain",
    "fit_optimum",
    "hard_example_verdict",
    "prepare_trials",
    "summarise_seeds",
    "target_classes",
]
