"""The layering of STYLE.md, read off the source: which package of `app` may import which,
and that no import goes round in a circle.

Every import counts, wherever it stands (inside functions, under TYPE_CHECKING): a cycle
that only bites at run time is still a cycle.
"""

import ast
from collections import defaultdict
from collections.abc import Iterator
from graphlib import CycleError, TopologicalSorter
from itertools import pairwise
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"

LAYERS = ("core", "models", "crud", "modules", "services", "tasks", "api", "alembic")

# What each package of `app` may import, besides itself. "crud.page" is one module, not
# the package: routes hand a Page to their response_model but never query.
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "models": frozenset({"core"}),
    "crud": frozenset({"core", "models"}),
    "modules": frozenset({"core"}),
    "services": frozenset({"core", "models", "crud", "modules"}),
    "tasks": frozenset({"core", "modules", "services"}),
    # deps.py reads the app's RunDispatcher, Storage and LLMClient (built by main) to hand
    # them to services.
    "api": frozenset(
        {"core", "models", "services", "tasks", "crud.page", "modules.storage", "modules.llm"}
    ),
    "alembic": frozenset({"core", "models"}),
    # The composition roots build everything; nothing imports them back.
    "main": frozenset(LAYERS),
    "cli": frozenset({*LAYERS, "main"}),
}

# Modules that must stay pure computation: the only modules of `app` they may import.
PURE: dict[str, frozenset[str]] = {
    "app.core.pricing": frozenset({"app.core.types"}),
    "app.core.vectors": frozenset(),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: dict[str, Path] = {module_name(path): path for path in sorted(APP.rglob("*.py"))}


def imported_modules(module: str) -> Iterator[tuple[str, int]]:
    """The modules of `app` that `module` imports, with the line of each import."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "app" or alias.name.startswith("app."):
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            if base != "app" and not base.startswith("app."):
                continue
            for alias in node.names:
                # `from app.crud import agent` imports the module app.crud.agent.
                submodule = f"{base}.{alias.name}"
                yield (submodule if submodule in MODULES else base), node.lineno


def package_of(module: str) -> str | None:
    """'app.crud.agent' -> 'crud', 'app.main' -> 'main'; None for `app` itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def may_import(source: str, target: str) -> bool:
    allowed = ALLOWED[source]
    if package_of(target) in allowed:
        return True
    return any(
        target == f"app.{entry}" or target.startswith(f"app.{entry}.")
        for entry in allowed
        if "." in entry
    )


def package_edges() -> dict[str, dict[str, list[str]]]:
    """source package -> target package -> where ("app/api/deps.py:18 app.tasks.dispatch")."""
    edges: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for module, path in MODULES.items():
        source = package_of(module)
        for target, line in imported_modules(module):
            target_package = package_of(target)
            if source is None or target_package is None or target_package == source:
                continue
            where = f"{path.relative_to(APP.parent)}:{line} {target}"
            edges[source][target_package].append(where)
    return edges


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as error:
        cycle: list[str] = error.args[1]
        return cycle
    return None


def test_every_package_has_its_place_in_the_table() -> None:
    packages = {package_of(module) for module in MODULES} - {None}
    assert packages == set(ALLOWED), "add the new package to ALLOWED (and to STYLE.md)"


def test_the_table_itself_allows_no_cycle() -> None:
    graph = {
        source: {entry.partition(".")[0] for entry in targets}
        for source, targets in ALLOWED.items()
    }
    assert cycle_in(graph) is None


def test_the_packages_import_each_other_without_a_cycle() -> None:
    edges = package_edges()
    cycle = cycle_in({source: set(targets) for source, targets in edges.items()})
    if cycle is not None:
        path = cycle[::-1]  # graphlib lists a cycle against the direction of the imports
        where = [f"{a} -> {b}: {edges[a][b][0]}" for a, b in pairwise(path)]
        raise AssertionError(f"import cycle {' -> '.join(path)}\n" + "\n".join(where))


def test_each_package_imports_only_what_its_layer_allows() -> None:
    violations = [
        f"{path.relative_to(APP.parent)}:{line} imports {target} "
        f"({source} may import only {sorted(ALLOWED[source])})"
        for module, path in MODULES.items()
        if (source := package_of(module)) is not None
        for target, line in imported_modules(module)
        if package_of(target) not in (None, source) and not may_import(source, target)
    ]
    assert violations == []


def test_each_integration_in_modules_stands_alone() -> None:
    """app.modules.llm and app.modules.mail know core and themselves, not each other."""
    violations = [
        f"{MODULES[module].relative_to(APP.parent)}:{line} imports {target}"
        for module in MODULES
        if module.startswith("app.modules.")
        for target, line in imported_modules(module)
        if package_of(target) == "modules" and target.split(".")[:3] != module.split(".")[:3]
    ]
    assert violations == []


def test_pure_modules_import_nothing_stateful() -> None:
    for module, allowed in PURE.items():
        imported = {target for target, _line in imported_modules(module)}
        assert imported <= allowed, f"{module} imports {sorted(imported - allowed)}"


def test_no_module_imports_itself_back() -> None:
    graph = {
        module: {target for target, _line in imported_modules(module) if target != module}
        for module in MODULES
    }
    cycle = cycle_in(graph)
    assert cycle is None, f"import cycle {' -> '.join(cycle[::-1])}"
