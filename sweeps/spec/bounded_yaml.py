"""YAML read with bounds: a spec or override value cannot make the CLI hang or run out of memory.

`yaml.safe_load` of a few hundred bytes of nested anchors ("billion laughs")
returns a structure that shares its parts, so loading is quick; but every
later step that walks it (the deep copy of overrides, pydantic) expands the
aliases, 10^9 nodes for a 300-byte file. So the document's node graph is
composed first and its size *as expanded* is counted (memoized per node,
linear in the graph), and a document above `MAX_NODES`, nested deeper than
`MAX_DEPTH`, or longer than `MAX_BYTES` is refused with one line naming the
limit, before anything walks it.
"""

from __future__ import annotations

import yaml

MAX_BYTES = 1_000_000  # a spec is a few KB; the largest shipped one is under 10 KB
MAX_NODES = 100_000  # values after alias expansion (a 1,000-trial spec has a few hundred)
MAX_DEPTH = 100  # nesting levels (a spec nests about six)


class YamlLimitError(ValueError):
    """A document over one of the bounds (the message names the limit)."""


def check_size(size: int, what: str) -> None:
    """YamlLimitError when `size` bytes exceed MAX_BYTES."""
    if size > MAX_BYTES:
        raise YamlLimitError(
            f"{what} is {size:,} bytes, over the limit of {MAX_BYTES:,} bytes for a spec"
        )


def safe_load(text: str, what: str = "the document") -> object:
    """`yaml.safe_load(text)` within the bounds; YamlLimitError over them, yaml.YAMLError if invalid."""
    check_size(len(text.encode("utf-8", "surrogatepass")), what)
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise YamlLimitError(
                f"{what} nests deeper than the limit of {MAX_DEPTH} levels"
            ) from None
        if node is None:
            return None
        _check_expanded(node, what)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expanded(root: yaml.Node, what: str) -> None:
    """YamlLimitError when the node graph, aliases expanded, exceeds MAX_NODES or MAX_DEPTH."""
    sizes: dict[int, int] = {}  # id(node) -> expanded node count
    depths: dict[int, int] = {}  # id(node) -> expanded depth below it
    # Iterative post-order walk (a deep document must not overflow Python's stack).
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if not done:
            if key in open_nodes:
                raise YamlLimitError(f"{what} has a recursive alias (an anchor used inside itself)")
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        open_nodes.discard(key)
        size = 1 + sum(sizes[id(c)] for c in children)
        depth = 1 + max((depths[id(c)] for c in children), default=0)
        if size > MAX_NODES:
            raise YamlLimitError(
                f"{what} expands to more than {MAX_NODES:,} values (YAML aliases included); "
                f"the limit is {MAX_NODES:,}"
            )
        if depth > MAX_DEPTH:
            raise YamlLimitError(f"{what} nests deeper than the limit of {MAX_DEPTH} levels")
        sizes[key] = size
        depths[key] = depth


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []
