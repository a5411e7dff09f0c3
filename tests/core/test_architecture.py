"""The layering of ``core/unirouter`` (docs/architecture.md): no import circle, no upward import.

Every module of the core belongs to one *unit* (a subpackage, or a foundation module), and every unit to
a layer. A module may import its own unit and any unit of a lower layer; never a unit of its own layer
or above, and never the ``unirouter`` package root (which re-exports from the top). Function-level
(lazy) imports count: a lazy upward import is still an upward dependency. Imports under
``if TYPE_CHECKING:`` are ignored (they never run). A new module must be given a place here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import unirouter

CORE = Path(unirouter.__file__).resolve().parent

# unit -> layer (low to high)
LAYERS: dict[str, int] = {
    "unirouter._version": 0,
    "unirouter._compat": 0,
    "unirouter._files": 0,
    "unirouter.exceptions": 0,
    "unirouter._validation": 0,
    "unirouter._params": 0,
    "unirouter.profiles": 0,
    "unirouter.data": 1,
    "unirouter.embedding": 1,
    "unirouter.persistence": 2,
    "unirouter.profiling": 3,
    "unirouter.pretrained": 4,
    "unirouter.routers": 5,
    "unirouter.integration": 6,
    "unirouter.evaluation": 6,
    "unirouter.pretrained.build": 6,
    "unirouter.cli": 7,
}
# The foundation modules form one layer; among themselves they must still respect this order.
FOUNDATION_ORDER = ["unirouter._compat", "unirouter._files", "unirouter._version", "unirouter.exceptions", "unirouter._validation", "unirouter._params", "unirouter.profiles"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(CORE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _unit(module: str) -> str | None:
    best = None
    for unit in LAYERS:
        if (module == unit or module.startswith(unit + ".")) and (best is None or len(unit) > len(best)):
            best = unit
    return best


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    is_pkg = path.name == "__init__.py"

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.split(".")[0] == "unirouter")
            elif isinstance(child, ast.ImportFrom):
                if child.level:  # relative import: resolve against this module's package
                    base = module.split(".") if is_pkg else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target.split(".")[0] != "unirouter":
                    continue
                for a in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{target}.{a.name}"
                    found.add(sub if (CORE.parent / (sub.replace(".", "/") + ".py")).is_file()
                              or (CORE.parent / sub.replace(".", "/") / "__init__.py").is_file() else target)
            visit(child)

    visit(tree)
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted(CORE.rglob("*.py")):
        module = _module_name(path)
        graph[module] = _imports(path, module)
    return graph


GRAPH = _graph()


def test_every_module_has_a_place():
    unplaced = sorted(m for m in GRAPH if m != "unirouter" and _unit(m) is None)
    assert not unplaced, f"give these modules a unit and a layer in LAYERS (and docs/architecture.md): {unplaced}"


def test_no_upward_or_sideways_import():
    bad = []
    for module, targets in GRAPH.items():
        if module == "unirouter":
            continue
        unit = _unit(module)
        for target in targets:
            if target == "unirouter":
                bad.append(f"{module} imports the package root (import the defining module instead)")
                continue
            tunit = _unit(target)
            if tunit is None or tunit == unit:
                continue
            if LAYERS[tunit] > LAYERS[unit] or (LAYERS[tunit] == LAYERS[unit] and LAYERS[unit] != 0):
                bad.append(f"{module} (layer {LAYERS[unit]}) imports {target} (layer {LAYERS[tunit]})")
            elif LAYERS[unit] == 0 and FOUNDATION_ORDER.index(tunit) > FOUNDATION_ORDER.index(unit):
                bad.append(f"{module} imports {target}, which comes after it in the foundation order")
    assert not bad, "imports against the layering of docs/architecture.md:\n" + "\n".join(sorted(bad))


def test_no_import_circle():
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(GRAPH.get(m, ())):
            if t not in GRAPH or t == m:
                continue
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("name", sorted(unirouter.__all__))
def test_public_names_still_import_from_the_package_root(name):
    assert getattr(unirouter, name) is not None


def test_checker_sees_a_planted_upward_import(tmp_path):
    # The checker itself works: an upward import in a foundation module is reported.
    src = tmp_path / "profiles.py"
    src.write_text("from unirouter.routers.uniroute import UniRouter\n")
    found = _imports(src, "unirouter.profiles")
    assert found == {"unirouter.routers.uniroute"}
    assert LAYERS[_unit("unirouter.routers.uniroute")] > LAYERS[_unit("unirouter.profiles")]


@pytest.mark.parametrize("old", sorted(__import__("unirouter._compat", fromlist=["x"]).MOVED_MODULES))
def test_the_flat_layouts_module_paths_still_import(old):
    # 0.1 code such as `from unirouter.scorers import MultipleChoiceScorer` keeps working, on the same objects
    import importlib

    from unirouter._compat import MOVED_MODULES

    assert importlib.import_module(old) is importlib.import_module(MOVED_MODULES[old])


def test_old_path_from_import_gives_the_same_class():
    from unirouter.profiling.scorers import MultipleChoiceScorer as new
    from unirouter.scorers import MultipleChoiceScorer as old

    assert old is new
