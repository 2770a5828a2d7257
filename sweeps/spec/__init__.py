"""The sweep spec: a YAML file validated by a pydantic schema, plus dotted overrides.

Every problem is reported with its field path, the bad value and what is
accepted, all at once, as one `SpecError` (a ValueError) with a line per problem.

One job per module: `strict` (the base model's conventions), `factors` (what
is crossed), `sections` (stage / search / resources / replicates / tracking
settings), `uris` (accepted tracking URIs), `schema` (`Spec`, the whole sweep),
`canonical` (canonical JSON and hashes), `errors` (`SpecError` and its text),
`overrides` (dotted overrides), `load` (files and shipped specs -> `Spec`),
`bounded_yaml` (YAML read within size, alias-expansion and depth limits).
This package re-exports their public names: `from sweeps.spec import X`.

Example:
    >>> spec = parse_spec({"name": "demo", "dataset": {"name": "synthetic"},
    ...                    "target": "superclass"}, overrides=["seeds=2"])
    >>> spec.seed_list()
    [0, 1]
"""

from __future__ import annotations

from sweeps.spec.canonical import canonical_hash, canonical_json
from sweeps.spec.errors import SpecError
from sweeps.spec.factors import (
    LEVEL_KEYWORDS,
    ArmSpec,
    BackboneSpec,
    DatasetSpec,
    FactorsSpec,
    LevelItem,
    arm_labels,
)
from sweeps.spec.load import load_spec, parse_spec, resolve_spec_path, shipped_specs
from sweeps.spec.overrides import apply_overrides
from sweeps.spec.schema import DEFAULT_TRAINABLE, MAX_TRIALS, Spec
from sweeps.spec.sections import (
    AnalysisSpec,
    FinetuneSpec,
    ReferenceCell,
    ReplicatesSpec,
    ResourcesSpec,
    SearchParam,
    SearchSpec,
    StageSpec,
    TrackingSpec,
)
from sweeps.spec.uris import ACCEPTED, SERVER_SCHEMES, SQL_SCHEMES, tracking_scheme, uri_problem

__all__ = [
    "ACCEPTED",
    "DEFAULT_TRAINABLE",
    "LEVEL_KEYWORDS",
    "MAX_TRIALS",
    "SERVER_SCHEMES",
    "SQL_SCHEMES",
    "AnalysisSpec",
    "ArmSpec",
    "BackboneSpec",
    "DatasetSpec",
    "FactorsSpec",
    "FinetuneSpec",
    "LevelItem",
    "ReferenceCell",
    "ReplicatesSpec",
    "ResourcesSpec",
    "SearchParam",
    "SearchSpec",
    "Spec",
    "SpecError",
    "StageSpec",
    "TrackingSpec",
    "apply_overrides",
    "arm_labels",
    "canonical_hash",
    "canonical_json",
    "load_spec",
    "parse_spec",
    "resolve_spec_path",
    "shipped_specs",
    "tracking_scheme",
    "uri_problem",
]
