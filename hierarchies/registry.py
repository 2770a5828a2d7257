"""The hierarchy registry: `build_hierarchy(kind, **kwargs)`, one builder per kind (timm-style).

A builder is a function taking keyword-only arguments and returning a
Hierarchy; `@register_hierarchy("name")` adds it. Kinds and their arguments:

- ``manual``: ``path=``, ``format="auto"|"inat2021"|"cifar100"|"csv"|"json"``
  (``levels=`` for inat2021).
- ``wordnet``: ``synsets="imagenet21k"|"imagenet1k"|<path to a wnid list>``,
  ``rule="depth"|"balanced"``.
- ``random``: ``reference=``, ``seed=``, ``leaf_level=``.
- ``cluster``: ``reference=``, ``embeddings=``, ``mode="within"|"global"``,
  ``target_level=``, ``seed=``, ``leaf_level=``.
- ``perturbed``: ``reference=``, ``p=``, ``seed=``, ``leaf_level=``.

``leaf_level`` (a level name or index; None: the leaves) is the level whose
classes the derived kinds move whole; finer levels stay the reference's
(hierarchies/leaf_level.py).

>>> "random" in list_hierarchy_kinds()
True
"""

from __future__ import annotations

from collections.abc import Callable

from contracts import Registry
from hierarchies.cluster import cluster_hierarchy
from hierarchies.core import Hierarchy
from hierarchies.manual import manual_hierarchy
from hierarchies.perturbed import perturbed_hierarchy
from hierarchies.random_tree import random_hierarchy
from hierarchies.wordnet import wordnet_hierarchy

HierarchyBuilder = Callable[..., Hierarchy]
_BUILDERS = Registry("hierarchy kind")


def register_hierarchy(kind: str) -> Callable[[HierarchyBuilder], HierarchyBuilder]:
    """Decorator: register `fn` as the builder of hierarchy `kind`."""
    return _BUILDERS.register(kind)


def list_hierarchy_kinds() -> list[str]:
    """Registered hierarchy kinds, sorted."""
    return _BUILDERS.names()


def is_hierarchy_kind(kind: str) -> bool:
    return _BUILDERS.has(kind)


def build_hierarchy(kind: str, **kwargs) -> Hierarchy:
    """Build a hierarchy of `kind` from keyword arguments (see the module docstring)."""
    return _BUILDERS.create(kind, **kwargs)


create_hierarchy = build_hierarchy  # the registries' common verb


# Each kind is a thin wrapper over its module's builder, so the registry stays one screen long.
register_hierarchy("manual")(manual_hierarchy)
register_hierarchy("wordnet")(wordnet_hierarchy)
register_hierarchy("random")(random_hierarchy)
register_hierarchy("cluster")(cluster_hierarchy)
register_hierarchy("perturbed")(perturbed_hierarchy)


def hierarchy_builder(kind: str) -> HierarchyBuilder:
    """The builder function of `kind` (to inspect its keyword arguments)."""
    return _BUILDERS.get(kind)
