"""Guarantees about the package's shape: no import cycles (function-level imports included),
layers point one way, no private gin state, public names documented."""
import ast
import os
import re

import pytest

from tests.conftest import REPO

PACKAGES = ("prompt_tuning", "experiments")


def _modules(root: str, base: str = REPO) -> dict[str, str]:
    """Dotted module name -> file, for every .py under <base>/<root>."""
    out = {}
    for dirpath, _, files in os.walk(os.path.join(base, root)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, base)[:-3].replace(os.sep, ".")
                out[name[: -len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def _imports(path: str, module: str, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its file (top level, functions, classes)."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` needs pkg.sub; `from pkg import name` needs pkg itself.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # 'a.b.func' -> 'a.b'
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's __init__ counts as the package)."""
    files = {}
    for root in PACKAGES:
        files.update(_modules(root))
    known = set(files)
    return {m: _imports(p, m, known) for m, p in files.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_an_injected_cycle():
    graph = import_graph()
    graph = {k: set(v) for k, v in graph.items()}
    graph["prompt_tuning.models.t5"].add("prompt_tuning.training.trainer")
    assert any("prompt_tuning.models.t5" in c for c in _cycles(graph))


def test_no_import_cycles_counting_function_level_imports():
    assert _cycles(import_graph()) == []


@pytest.mark.parametrize("lower, upper", [
    ("prompt_tuning.data", "prompt_tuning.training"), ("prompt_tuning.data", "prompt_tuning.checkpoints"),
    ("prompt_tuning.models", "prompt_tuning.training"), ("prompt_tuning.models", "prompt_tuning.checkpoints"),
    ("prompt_tuning.models", "prompt_tuning.methods"), ("prompt_tuning.methods", "prompt_tuning.training"),
    ("prompt_tuning", "experiments"),
])
def test_layers_point_one_way(lower, upper):
    bad = sorted((m, i) for m, imports in import_graph().items() if m.startswith(lower + ".") or m == lower
                 for i in imports if i == upper or i.startswith(upper + "."))
    assert not bad, bad


def test_no_private_gin_state():
    pattern = re.compile(r"gin\.config\._|gin\.config as \w+|\bgc\._")
    hits = [f"{path}:{i}" for root in PACKAGES for path in _modules(root).values()
            for i, line in enumerate(open(path), 1) if pattern.search(line)]
    assert not hits, hits


def _public_definitions(path: str):
    """(name, has_docstring) for the module and every public top-level function, class and method."""
    tree = ast.parse(open(path).read(), path)
    yield "<module>", ast.get_docstring(tree) is not None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, ast.get_docstring(node) is not None
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef)) and not sub.name.startswith("_"):
                        yield f"{node.name}.{sub.name}", ast.get_docstring(sub) is not None


def docstring_coverage(root: str = "prompt_tuning", base: str = REPO) -> tuple[float, list[str]]:
    """(fraction of public names with a docstring, the undocumented ones) under <base>/<root>."""
    names, missing = 0, []
    for module, path in sorted(_modules(root, base).items()):
        if path.endswith("__init__.py") and not open(path).read().strip():
            continue
        for name, documented in _public_definitions(path):
            names += 1
            if not documented:
                missing.append(f"{module}.{name}")
    return (names - len(missing)) / names, missing


def test_docstring_coverage_of_public_names_is_at_least_90_percent():
    coverage, missing = docstring_coverage()
    assert coverage >= 0.90, f"{coverage:.1%} documented; missing: {missing}"


def test_docstring_coverage_counts_modules_functions_classes_and_methods(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text(
        '"""Doc."""\n\ndef f():\n    """Doc."""\n\ndef g():\n    pass\n\ndef _private():\n    pass\n\n'
        'class C:\n    def method(self):\n        pass\n')
    coverage, missing = docstring_coverage("pkg", base=str(tmp_path))
    assert missing == ["pkg.m.g", "pkg.m.C", "pkg.m.C.method"] and coverage == 2 / 5
