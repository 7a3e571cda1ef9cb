"""The shape of the package itself: small functions, and imports that go one way."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "camlab"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def test_no_function_in_camlab_is_longer_than_60_lines():
    long = []
    for path in _modules().values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def _lab_imports(name: str, path: Path) -> set[str]:
    """The camlab.lab modules that ``name`` imports anywhere in its file (function bodies included)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            found |= {target} | {f"{target}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {module for module in found if module.startswith("camlab.lab.")}


def test_the_lab_imports_one_way():
    """scenes, architectures <- vqa <- zoo <- train: no module of the lab imports one that imports it back."""
    modules = {name: path for name, path in _modules().items() if name.startswith("camlab.lab.")}
    graph = {name: _lab_imports(name, path) & set(modules) - {name} for name, path in modules.items()}
    assert graph["camlab.lab.vqa"] <= {"camlab.lab.architectures", "camlab.lab.scenes"}
    assert "camlab.lab.train" not in set().union(*graph.values())

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})) for nxt in graph[start])

    cycles = [name for name in graph if reaches(name, name, {name})]
    assert not cycles, graph


#: ARCHITECTURE.md's layers, lowest first; a module may import from its own layer or a lower one
LAYERS = [
    {"camlab.hooks", "camlab.layouts", "camlab.maps", "camlab.targets", "camlab.modelinfo", "camlab._paths", "camlab.progress",
     "camlab.stats"},
    {"camlab.methods", "camlab.ablation", "camlab.rollout", "camlab.chefer", "camlab.legrad"},
    {"camlab.models", "camlab.preprocessing", "camlab.inspection", "camlab.images", "camlab.bundled_images",
     "camlab.lab"},
    {"camlab.metrics", "camlab.analysis", "camlab.compare", "camlab.evaluate", "camlab.outcomes", "camlab.scorecard"},
]


#: command-line modules inside a lower layer's package are front ends (they follow camlab.cli's conventions); the
#: package may re-export its command line's ``main`` (``camlab.evaluate.main``, which ``camlab evaluate`` calls)
FRONT_ENDS = {"camlab.evaluate.cli": "camlab.evaluate", "camlab.evaluate.__main__": None}


def _layer(module: str) -> int:
    if module in FRONT_ENDS:
        return len(LAYERS)
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    return len(LAYERS)  # the front ends: explain, viz, widgets, cli, course, exercises, the package itself


def _camlab_imports(name: str, path: Path) -> set[str]:
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                found.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {module for module in found if module.startswith("camlab.")}


def test_modules_import_only_from_their_layer_or_below():
    upward = [f"{name} -> {target}" for name, path in _modules().items() if _layer(name) < len(LAYERS)
              for target in _camlab_imports(name, path)
              if _layer(target) > _layer(name) and FRONT_ENDS.get(target, "") != name]
    assert not upward, upward


def test_every_subpackage_of_camlab_is_in_the_wheel():
    """A subpackage missing from pyproject's package list imports here (editable install) but not from the wheel that
    Colab installs (it happened to camlab.targets)."""
    import re

    root = Path(__file__).resolve().parents[1]
    block = re.search(r"^packages = \[(.*?)\]", (root / "pyproject.toml").read_text(), re.S | re.M).group(1)
    listed = set(re.findall(r'"([\w.]+)"', block))
    found = {".".join(init.parent.relative_to(root).parts) for init in (root / "camlab").rglob("__init__.py")}
    assert found - listed == set(), f"add these to [tool.setuptools] packages in pyproject.toml: {sorted(found - listed)}"


def _imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The camlab modules ``name`` imports anywhere in its file, function bodies included: ``from camlab.a import
    b`` counts as importing ``camlab.a.b`` when that is a module, else ``camlab.a``."""
    found = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module
            found |= {f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {module for module in found if module in modules and module != name}


def import_cycles(package: Path = PACKAGE) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (strongly connected components of the
    import graph with more than one module), function-level imports included."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: _imported_modules(name, path, modules) for name, path in modules.items()}
    reach = {name: set(targets) for name, targets in graph.items()}
    changed = True
    while changed:  # transitive closure; the package has about a hundred modules
        changed = False
        for name, targets in reach.items():
            more = set().union(*(reach[t] for t in targets)) - targets if targets else set()
            if more:
                targets |= more
                changed = True
    groups = {frozenset({name} | {other for other in reach[name] if name in reach[other]})
              for name in modules if name in reach[name]}
    return sorted(sorted(group) for group in groups)


def test_no_module_imports_itself_back_not_even_from_inside_a_function():
    """A function-level import hides a cycle from the import system but not from the design: hooks <-> layouts and
    cli -> evaluate -> evaluate.cli -> cli were two, on main."""
    assert import_cycles() == []


def test_the_cycle_finder_sees_a_function_level_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import g\n\ndef f():\n    return g()\n")
    (package / "b.py").write_text("def g():\n    from pkg.a import f  # hidden inside a function\n    return f\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert import_cycles(package) == [["pkg.a", "pkg.b"]]
