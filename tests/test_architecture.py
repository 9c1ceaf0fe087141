"""The package's import graph: no cycles, and every import points down the stages (docs/ARCHITECTURE.md).

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a lazy import is still a
dependency, and a cycle through one is a cycle in the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "llara"

#: the top-level modules every stage may use
BASE = {"base"}
#: area -> the areas it may import (besides itself); an area is a subpackage, ``base`` (errors, paths,
#: metrics and the config package), ``testing`` (test helpers) or ``cli`` (cli.py, __main__.py and commands/)
ALLOWED: dict[str, set[str]] = {
    "base": set(),
    "data": BASE,
    "sr": BASE | {"data"},
    "llm": BASE | {"data", "sr"},
    "evaluation": BASE | {"data", "sr", "llm"},
    "training": BASE | {"data", "sr", "llm", "evaluation"},
    "serving": BASE | {"data", "sr", "llm", "evaluation"},
    "pipeline": BASE | {"data", "sr", "llm", "evaluation", "training", "serving"},
    "testing": BASE | {"data", "sr", "llm"},
    "cli": BASE | {"data", "sr", "llm", "evaluation", "training", "serving", "pipeline"},
}
AREA_OF_MODULE = {"cli": "cli", "__main__": "cli", "commands": "cli", "testing": "testing", "config": "base"}


def module_name(path: Path) -> str:
    """``src/llara/training/loop.py`` -> ``llara.training.loop`` (a package is named by its folder)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def area(module: str) -> str:
    """The area a module belongs to (see :data:`ALLOWED`)."""
    parts = module.split(".")
    if len(parts) == 1:
        return "base"
    if parts[1] in AREA_OF_MODULE:
        return AREA_OF_MODULE[parts[1]]
    return parts[1] if (PACKAGE / parts[1]).is_dir() else "base"


def imported_modules(path: Path, modules: set[str]) -> Iterator[str]:
    """The package modules ``path`` imports, anywhere in the file."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llara":
            named = [f"{node.module}.{alias.name}" for alias in node.names]
            submodules = [name for name in named if name in modules]
            yield from submodules or [node.module]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {module: set(imported_modules(path, set(paths))) - {module} for module, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a list of modules (first repeated at the end), or [] when there is none."""
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> list[str]:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return [*trail[trail.index(target):], target]
            if target not in state and (cycle := visit(target, [*trail, target])):
                return cycle
        state[module] = "done"
        return []

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return []


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_stages():
    wrong = [
        f"{module} ({area(module)}) imports {target} ({area(target)})"
        for module, targets in import_graph().items()
        for target in targets
        if area(target) != area(module) and area(target) not in ALLOWED[area(module)]
    ]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_cycles_and_areas():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []
    modules = ("llara.config", "llara.config.loading", "llara.sr.train", "llara.commands.sr", "llara.testing")
    assert [area(m) for m in modules] == ["base", "base", "sr", "cli", "testing"]
