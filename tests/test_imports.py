"""The import rules of docs/ARCHITECTURE.md, read from the source (ast): who may import whom, no circles.

Every `import` statement counts, also those inside functions (a deferred
import is still a dependency, and two modules importing each other that way
are still a circle); an import of a package's own `__init__` counts as an
import of that package. `__import__("x")` and `importlib.import_module("x")`
with a literal name count as imports too; with a computed name they are
refused, except where a spec names user code (`DYNAMIC_IMPORTS`). No module
reaches into another project module's private (`_name`) attributes. A module has one job: one
longer than MAX_LINES says why in its docstring (LONG_REASON followed by the reason).
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hierarchies", "trainables", "sweeps", "analysis", "testing")
CONTRACTS = "contracts"
FILEIO = "fileio"  # atomic file writes and JSON records: stdlib only, like contracts
# Top-level modules beside the packages; every package may import them.
# sequential.py (adaptive replicates' statistics) is used by the driver
# (sweeps) and the report (analysis), which may not import each other.
SEQUENTIAL = "sequential"
SEQUENTIAL_MAY_IMPORT = {"contracts", "numpy", "scipy"}
# racing.py (best-level races, a stop rule of adaptive replicates) builds on sequential.py,
# for the same two users.
RACING = "racing"
RACING_MAY_IMPORT = SEQUENTIAL_MAY_IMPORT | {"sequential"}
# What each package must never import (docs/ARCHITECTURE.md, "Imports").
# `testing` (fakes for tests and bench) may import any package; none imports it.
FORBIDDEN = {
    "hierarchies": {"trainables", "sweeps", "analysis", "testing"},
    "trainables": {"sweeps", "analysis", "testing"},
    "analysis": {"trainables", "sweeps", "testing"},
    "sweeps": {"analysis", "testing"},
    "testing": set(),
}
# The composition root: the `granularity` command wires every package's CLI, so it
# alone may import `analysis.cli` from `sweeps`.
ALLOWED_EDGES = {("sweeps.cli", "analysis.cli")}
# Modules that import a module by a computed name, and why that is no hidden edge.
DYNAMIC_IMPORTS = {
    "sweeps.runner": "the trainable a spec names as `module:function` (user code)",
    "sweeps.plan": "the dataset a spec names as `module:function` (user code)",
}
# A module over this many lines is split by job, or its docstring says why it is not.
MAX_LINES = 400
LONG_REASON = re.compile(r"Longer than 400 lines because \S+ \S+ \S+")
# Third-party packages that one module of the project holds behind its API.
ONLY_IN = {"ray": {"sweeps.ray_backend"}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {name: ROOT / f"{name}.py" for name in (CONTRACTS, FILEIO, SEQUENTIAL, RACING)}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[_module_name(path)] = path
    return modules


MODULES = _project_modules()


def _dynamic_import(node: ast.AST) -> ast.expr | None:
    """The name argument of an `__import__(...)` or `importlib.import_module(...)` call, else None."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id in ("__import__", "import_module"):
        return node.args[0]
    if isinstance(func, ast.Attribute) and func.attr in ("__import__", "import_module"):
        return node.args[0]
    return None


def _computed_imports(path: Path) -> list[int]:
    """Lines of dynamic imports whose module name is not a literal."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        node.lineno
        for node in ast.walk(tree)
        if (arg := _dynamic_import(node)) is not None
        and not (isinstance(arg, ast.Constant) and isinstance(arg.value, str))
    ]


def _imported(name: str, path: Path) -> set[str]:
    """Dotted names of everything module `name` imports (absolute, submodules resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        arg = _dynamic_import(node)
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            out.add(arg.value)
        elif isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in MODULES else base)
    return out


IMPORTS = {name: _imported(name, path) for name, path in MODULES.items()}


def _project_edges() -> dict[str, set[str]]:
    """module -> the project modules it imports (itself left out)."""
    edges = {}
    for name, imported in IMPORTS.items():
        targets = set()
        for dotted in imported:
            parts = dotted.split(".")
            # `import a.b.c` of a project module: the longest prefix that is one.
            for i in range(len(parts), 0, -1):
                if ".".join(parts[:i]) in MODULES:
                    targets.add(".".join(parts[:i]))
                    break
        edges[name] = targets - {name}
    return edges


EDGES = _project_edges()


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_module_list_is_read():
    assert {"contracts", "sequential", "sweeps.runner", "analysis.load"} <= set(MODULES)
    assert "sequential" in EDGES["sweeps.rounds"] and "sequential" in EDGES["analysis.adaptive"]
    assert "contracts" in EDGES["sweeps.spec.schema"]
    assert "sweeps.ledger.ledger" in EDGES["sweeps.executor"]


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_the_rules_allow(package):
    bad = sorted(
        f"{name} imports {target}"
        for name, targets in EDGES.items()
        if _top(name) == package
        for target in targets
        if _top(target) in FORBIDDEN[package] and (name, target) not in ALLOWED_EDGES
    )
    assert not bad, f"{package} must not import {sorted(FORBIDDEN[package])}: {bad}"


def test_dynamic_imports_are_seen_or_named():
    # A literal name is an edge like any import (the rules above apply to it).
    tree = ast.parse("import importlib\nimportlib.import_module('analysis.cli')\n__import__('x.y')")
    names = [
        arg.value
        for node in ast.walk(tree)
        if isinstance(arg := _dynamic_import(node), ast.Constant)
    ]
    assert names == ["analysis.cli", "x.y"]
    computed = {name: _computed_imports(path) for name, path in MODULES.items()}
    bad = {name: lines for name, lines in computed.items() if lines and name not in DYNAMIC_IMPORTS}
    assert not bad, f"imports by a computed name hide edges from this test: {bad}"
    assert all(computed[name] for name in DYNAMIC_IMPORTS), "an allowed dynamic import is gone"


def _private_names(tree: ast.AST) -> set[str]:
    """`_name`s a module defines: functions, classes, module names and attributes it assigns."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
    return {n for n in out if n.startswith("_") and not n.startswith("__")}


def private_reaches(sources: dict[str, str]) -> list[str]:
    """`module:line what` for each use of another module's private name (`x._name`, `from m import _n`).

    A private name is one a project module defines; third-party private APIs
    are not the project's seams and are left to review.
    """
    trees = {name: ast.parse(text) for name, text in sources.items()}
    own = {name: _private_names(tree) for name, tree in trees.items()}
    anyones = set().union(*own.values())
    out = []
    for name, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in anyones - own[name]:
                out.append(f"{name}:{node.lineno} {ast.unparse(node)}")
            elif isinstance(node, ast.ImportFrom) and node.module in sources:
                out += [
                    f"{name}:{node.lineno} from {node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    return sorted(out)


def test_no_module_reaches_into_another_modules_private_names():
    sources = {name: path.read_text() for name, path in MODULES.items()}
    assert not private_reaches(sources), private_reaches(sources)


def test_a_private_reach_is_found():
    sources = {
        "a": "class A:\n    def _log(self):\n        self._n = 1\n",
        "b": "from a import A, _helper\nA()._log()\nx = A()\nx._n\n",
        "c": "class C:\n    def _log(self):\n        return self._log\n",
    }
    sources["a"] += "def _helper():\n    pass\n"
    assert private_reaches(sources) == [
        "b:1 from a import _helper",
        "b:2 A()._log",
        "b:4 x._n",
    ]


def long_modules_without_reason(sources: dict[str, str]) -> list[str]:
    """Modules over MAX_LINES lines whose docstring lacks LONG_REASON, as 'name: N lines'."""
    out = []
    for name, text in sources.items():
        lines = len(text.splitlines())
        doc = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
        if lines > MAX_LINES and not LONG_REASON.search(doc):
            out.append(f"{name}: {lines} lines")
    return sorted(out)


def test_a_long_module_says_why_in_its_docstring():
    sources = {name: path.read_text() for name, path in MODULES.items()}
    assert not long_modules_without_reason(sources), long_modules_without_reason(sources)


def test_a_long_module_without_a_reason_is_found():
    body = "x = 1\n" * MAX_LINES
    sources = {
        "short": '"""One job."""\n' + "x = 1\n" * (MAX_LINES - 1),
        "long": '"""One job."""\n' + body,
        "bare_phrase": '"""One job.\n\nLonger than 400 lines because\n"""\n' + body,
        "reasoned": '"""One job.\n\nLonger than 400 lines because it must\nbe so.\n"""\n' + body,
        "in_a_comment": '"""One job."""\n# Longer than 400 lines because it must be so.\n' + body,
    }
    assert long_modules_without_reason(sources) == [
        "bare_phrase: 404 lines",
        "in_a_comment: 402 lines",
        "long: 401 lines",
    ]


def test_bench_scripts_rely_on_the_installed_project():
    """`python bench/x.py` imports the installed packages (and its bench/ siblings): no sys.path."""
    patched = [
        f"{path.name}:{node.lineno}"
        for path in sorted((ROOT / "bench").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    ]
    assert not patched, patched


@pytest.mark.parametrize("module", [CONTRACTS, FILEIO])
def test_stdlib_only_modules_import_nothing_else(module):
    outside = sorted(
        dotted for dotted in IMPORTS[module] if _top(dotted) not in sys.stdlib_module_names
    )
    assert not outside, f"{module}.py must stay dependency-free, imports {outside}"


@pytest.mark.parametrize(
    "module, allowed", [(SEQUENTIAL, SEQUENTIAL_MAY_IMPORT), (RACING, RACING_MAY_IMPORT)]
)
def test_top_level_statistics_import_only_what_they_may(module, allowed):
    outside = sorted(
        dotted
        for dotted in IMPORTS[module]
        if _top(dotted) not in sys.stdlib_module_names and _top(dotted) not in allowed
    )
    assert not outside, f"{module}.py may import {', '.join(sorted(allowed))} only: {outside}"


def test_third_party_apis_stay_behind_their_one_module():
    bad = sorted(
        f"{name} imports {dotted}"
        for name, imported in IMPORTS.items()
        for dotted in imported
        if _top(dotted) in ONLY_IN and name not in ONLY_IN[_top(dotted)]
    )
    assert not bad, bad


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_imports_itself_back():
    assert not _cycles(EDGES), f"import circles: {_cycles(EDGES)}"


def test_a_circle_is_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_building_the_cli_parser_imports_no_pandas():
    """`granularity --help` and the non-analysis commands build the whole parser; pandas
    (half a second to import) comes only when `analyze` runs."""
    import subprocess

    code = (
        "import sys\n"
        "from sweeps.cli import build_parser\n"
        "build_parser().parse_args(['analyze', 'quickstart'])\n"
        "heavy = sorted(m for m in ('pandas', 'mlflow', 'scipy', 'analysis.load') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout
