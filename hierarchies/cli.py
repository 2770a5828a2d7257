"""`granularity hierarchy build|show`: build a hierarchy of any registered kind, print its levels.

    granularity hierarchy build wordnet --synsets imagenet21k --out imagenet21k.json
    granularity hierarchy build random --reference manual.json --seed 1 --out random.json
    granularity hierarchy show random.json --reference manual.json --target superclass

Errors a user can fix (unknown kind, malformed file, missing WordNet) print one
line naming the problem and exit 2; no output file is written unless the
build succeeded (and then atomically).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import numpy as np

from hierarchies.core import Hierarchy, HierarchyError
from hierarchies.registry import hierarchy_builder, list_hierarchy_kinds
from hierarchies.summary import format_table, level_table

# CLI flag -> builder keyword; a flag is passed only when given, and only to a kind that takes it.
_BUILD_OPTIONS = {
    "path": "path",
    "format": "format",
    "levels": "levels",
    "synsets": "synsets",
    "rule": "rule",
    "reference": "reference",
    "seed": "seed",
    "p": "p",
    "mode": "mode",
    "target_level": "target_level",
    "embeddings": "embeddings",
}


def register(subparsers) -> None:
    """Add the `hierarchy` command (with `build` and `show`) to the `granularity` CLI."""
    parser = subparsers.add_parser(
        "hierarchy",
        help="build and inspect label hierarchies",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="hierarchy_command", required=True, metavar="ACTION")

    build = commands.add_parser("build", help="build a hierarchy of KIND and print its levels")
    build.add_argument("kind", metavar="KIND", help=f"one of: {', '.join(list_hierarchy_kinds())}")
    build.add_argument("--path", help="manual: source file or folder")
    build.add_argument("--format", help="manual: auto|inat2021|cifar100|csv|json")
    build.add_argument(
        "--levels",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        help="manual inat2021: comma-separated ranks, coarse to fine",
    )
    build.add_argument("--synsets", help="wordnet: imagenet21k|imagenet1k|<wnid list file>")
    build.add_argument("--rule", help="wordnet: depth (default)|balanced")
    build.add_argument("--reference", help="random/cluster/perturbed: the reference hierarchy JSON")
    build.add_argument("--seed", type=int, help="random/cluster/perturbed: seed (default 0)")
    build.add_argument("--p", type=float, help="perturbed: fraction of leaves moved, 0..1")
    build.add_argument("--mode", help="cluster: within|global")
    build.add_argument(
        "--target-level", help="cluster: the reference's target level (name or index)"
    )
    build.add_argument("--embeddings", help="cluster: .npy array [n_leaves, d]")
    build.add_argument(
        "--clip-model", help="cluster: open_clip model name for class-name embeddings"
    )
    build.add_argument("--clip-weights", help="cluster: local open_clip weights file")
    build.add_argument("--target", help="level to measure alignment against in the table")
    build.add_argument("--out", help="write the hierarchy JSON here (atomically)")
    build.set_defaults(func=_build)

    show = commands.add_parser("show", help="print the level table of a hierarchy JSON")
    show.add_argument("hierarchy", metavar="H.json")
    show.add_argument("--target", help="level to measure alignment against")
    show.add_argument("--reference", help="take --target from this hierarchy (same leaves)")
    show.set_defaults(func=_show)


def _fail(message: str) -> int:
    print(f"granularity hierarchy: error: {message}", file=sys.stderr)
    return 2


def _builder_kwargs(args: argparse.Namespace) -> dict:
    """The builder's keyword arguments from the flags given, checked against what the kind takes."""
    accepted = set(inspect.signature(hierarchy_builder(args.kind)).parameters)
    given = {key: getattr(args, flag) for flag, key in _BUILD_OPTIONS.items()}
    given = {key: value for key, value in given.items() if value is not None}
    if args.clip_model or args.clip_weights:
        given["embeddings"] = "clip"
    not_taken = sorted(set(given) - accepted)
    if not_taken:
        flags = ", ".join("--" + key.replace("_", "-") for key in sorted(accepted))
        raise HierarchyError(
            f"--{not_taken[0].replace('_', '-')} does not apply to kind {args.kind!r} "
            f"(its options: {flags})"
        )
    if "reference" in given:
        given["reference"] = Hierarchy.load(given["reference"])
    if given.get("target_level") is not None and str(given["target_level"]).lstrip("-").isdigit():
        given["target_level"] = int(given["target_level"])
    if given.get("embeddings") == "clip":
        if not (args.clip_model and args.clip_weights):
            raise HierarchyError("--clip-model and --clip-weights go together")
        if "reference" not in given:
            raise HierarchyError("--clip-model needs --reference (its leaves are embedded)")
        from hierarchies.embeddings import class_name_embeddings

        reference = given["reference"]
        names = reference.meta.get("leaf_lemmas") or reference.leaf_names
        given["embeddings"] = class_name_embeddings(
            names, model_name=args.clip_model, weights_path=args.clip_weights
        )
    elif "embeddings" in given:
        path = Path(given["embeddings"])
        if not path.is_file():
            raise FileNotFoundError(f"embeddings file {str(path)!r} does not exist")
        try:
            given["embeddings"] = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise HierarchyError(f"{str(path)!r} is not a .npy array ({err})") from err
    return given


def _target_labels(hierarchy: Hierarchy, target: str | None, source: Hierarchy | None):
    if target is None:
        return None
    source = source or hierarchy
    if source.num_leaves != hierarchy.num_leaves or source.leaf_names != hierarchy.leaf_names:
        raise HierarchyError("the reference hierarchy has other leaves than this one")
    return source.mapping(target)


def _print_table(hierarchy: Hierarchy, target_labels, target_name: str | None) -> None:
    sizes = hierarchy.level_sizes()
    print(
        f"{hierarchy.kind} hierarchy: {hierarchy.num_leaves} leaves, {hierarchy.num_levels} levels, "
        f"content hash {hierarchy.content_hash()}"
        + (f"; alignment with target {target_name!r}" if target_name else "")
    )
    print(format_table(level_table(hierarchy, target=target_labels)))
    if sizes and sizes[-1] != hierarchy.num_leaves:
        print(f"note: the finest level has {sizes[-1]} classes for {hierarchy.num_leaves} leaves")


def _build(args: argparse.Namespace) -> int:
    try:
        kwargs = _builder_kwargs(args)
        hierarchy = hierarchy_builder(args.kind)(**kwargs)
        target_source = kwargs.get("reference")
        target = args.target
        if target is None and args.kind == "cluster" and "target_level" in kwargs:
            target = kwargs["target_level"]
        target_labels = _target_labels(hierarchy, target, target_source)
        _print_table(hierarchy, target_labels, None if target is None else str(target))
        if args.out:
            # Saved only after everything above succeeded; save() itself is atomic.
            hierarchy.save(args.out)
            print(f"wrote {args.out}")
    except (RuntimeError, ValueError, LookupError, FileNotFoundError, TypeError) as err:
        return _fail(str(err))
    return 0


def _show(args: argparse.Namespace) -> int:
    try:
        hierarchy = Hierarchy.load(args.hierarchy)
        reference = Hierarchy.load(args.reference) if args.reference else None
        target_labels = _target_labels(hierarchy, args.target, reference)
        _print_table(hierarchy, target_labels, args.target)
    except (ValueError, LookupError, FileNotFoundError) as err:
        return _fail(str(err))
    return 0
