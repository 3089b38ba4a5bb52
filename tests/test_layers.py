"""Data flows one way: no import in ``rcml_st/`` or ``cli/`` runs back up the layers or closes a cycle.

The layers, lowest first: data -> modules (and the model built on them) -> losses / evaluation /
index -> training -> cli, with ``serve`` at the top beside the CLI. Every import is read from the
source (function-level ones included), as are the names a package re-exports lazily (``_LAZY``) and
the ``rcml_st.NAME`` uses after a bare ``import rcml_st``. Imports under ``if TYPE_CHECKING:`` are
left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The layer of each top-level part of ``rcml_st`` (``cli/`` installs as ``rcml_st.cli``). A module may
#: import from its own part and from lower layers; parts on the same layer do not import each other,
#: except for the pairs in :data:`SIDEWAYS`.
LAYERS: dict[str, float] = {
    # Small helpers any layer may use, on the errors (``rcml_st`` here: ``__version__``; the names
    # it re-exports lazily are resolved to the modules that define them).
    "errors": 0,
    "rcml_st": 0.5,
    "_lazy": 0.5,
    "atomic": 0.5,
    "output_files": 0.5,
    "safe_load": 0.5,
    "hub": 0.5,
    "data": 1,
    "modules": 2,
    # The model built from the modules: its card and encoding with relations, then build_model/load.
    "model_card": 2.3,
    "encoding": 2.3,
    "model": 2.6,
    "losses": 3,
    "evaluation": 3,
    "index": 3,
    "training": 4,
    "serve": 5,
    "cli": 5,
}
#: (importer, imported) pairs on one layer that may import: ``rcml-st serve`` starts the server.
SIDEWAYS = {("cli", "serve")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "cli":
        parts = ["rcml_st", *parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


FILES = {
    _module_name(path): path
    for folder in ("rcml_st", "cli")
    for path in sorted((ROOT / folder).rglob("*.py"))
    if "__pycache__" not in path.parts
}


def _lazy_names(tree: ast.Module) -> dict[str, str]:
    """The ``_LAZY = {name: module}`` table of a package that re-exports names on first use."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "_LAZY" for target in node.targets
        ):
            return ast.literal_eval(node.value)
    return {}


TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in FILES.items()}
LAZY = {name: _lazy_names(tree) for name, tree in TREES.items()}


def _known(module: str) -> str | None:
    """The module of ``rcml_st`` that ``module`` (or the longest known prefix of it) names."""
    while module and module not in FILES:
        module = module.rpartition(".")[0]
    return module or None


def _resolve(module: str, name: str) -> str | None:
    """The module that ``from module import name`` runs."""
    if f"{module}.{name}" in FILES:
        return f"{module}.{name}"
    return LAZY.get(module, {}).get(name) or _known(module)


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(inner) for statement in node.body for inner in ast.walk(statement))
    return skipped


def imports(name: str) -> list[tuple[int, str]]:
    """``(line, module)`` for each module of ``rcml_st`` that module ``name`` imports."""
    tree, found = TREES[name], []
    is_package = FILES[name].name == "__init__.py"
    skipped = _type_checking_nodes(tree)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "rcml_st" and alias.asname is None:
                    # `import rcml_st`, then `rcml_st.load(...)`: the names used are what runs.
                    found += [
                        (use.lineno, _resolve("rcml_st", use.attr))
                        for use in ast.walk(tree)
                        if isinstance(use, ast.Attribute)
                        and isinstance(use.value, ast.Name)
                        and use.value.id == "rcml_st"
                    ]
                else:
                    found.append((node.lineno, _known(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, module] if module else base)
            found += [(node.lineno, _resolve(module, alias.name)) for alias in node.names]
    return [(line, target) for line, target in found if target and target != name]


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_part_of_the_package_has_a_layer():
    assert {_layer(name) for name in FILES} <= set(LAYERS)


def _upward(name: str) -> list[str]:
    """The imports of module ``name`` that go up the layers or sideways."""
    found = []
    edges = {*imports(name), *((0, target) for target in LAZY[name].values())}
    for line, target in sorted(edges):
        source, destination = _layer(name), _layer(target)
        # The root package only re-exports the public API (its imports of it are lazy names, checked
        # where they are used).
        if source == destination or source == "rcml_st" or (source, destination) in SIDEWAYS:
            continue
        if LAYERS[destination] >= LAYERS[source]:
            found.append(f"{FILES[name].relative_to(ROOT)}:{line}: {name} imports {target}")
    return found


def test_no_import_goes_up_the_layers_or_sideways():
    found = [problem for name in FILES for problem in _upward(name)]
    assert not found, "\n".join(found)


def test_the_layer_check_sees_a_function_level_import(monkeypatch):
    # The check itself can fail: a function-level import of the CLI from training is found.
    name = "rcml_st.training.example"
    source = "def main():\n    from rcml_st.cli.main import app\n    app()\n"
    monkeypatch.setitem(FILES, name, ROOT / "rcml_st" / "training" / "example.py")
    monkeypatch.setitem(TREES, name, ast.parse(source))
    monkeypatch.setitem(LAZY, name, {})
    assert _upward(name) == [
        "rcml_st/training/example.py:2: rcml_st.training.example imports rcml_st.cli.main"
    ]


def _cycle() -> list[str] | None:
    """One import cycle between modules (a list of names, the first repeated last), if any."""
    graph = {name: sorted({target for _, target in imports(name)}) for name in FILES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for target in graph[name]:
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[name] = 2
        return None

    for name in graph:
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


def test_no_import_cycle():
    cycle = _cycle()
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_check_sees_a_cycle_through_function_level_imports(monkeypatch):
    for name, other in (("rcml_st.data.example_a", "example_b"), ("rcml_st.data.example_b", "example_a")):
        monkeypatch.setitem(FILES, name, ROOT / "rcml_st" / "data" / f"{name.rpartition('.')[2]}.py")
        monkeypatch.setitem(TREES, name, ast.parse(f"def f():\n    from rcml_st.data import {other}\n"))
        monkeypatch.setitem(LAZY, name, {})
    assert _cycle() == ["rcml_st.data.example_a", "rcml_st.data.example_b", "rcml_st.data.example_a"]
