"""The packages import in one direction only: the layer order written in README.md's
architecture section. Read from the source (ast), nothing is imported or run; imports inside
functions count too, since a lazy import is still a dependency."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOP_LEVEL_SCRIPTS = ("cli",)  # modules at the repository root that are not packages


def readme_layers() -> list[set[str]]:
    """The `Import layers` line of README.md: groups separated by `<`, lowest first, names in
    backticks (a group may hold several packages, separated by commas)."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("Import layers"):
            return [set(re.findall(r"`([a-z_]+)`", group)) for group in line.split(":", 1)[1].split("<")]
    raise AssertionError("README.md has no 'Import layers' line in its architecture section.")


def project_units() -> dict[str, list[Path]]:
    """Package (or root script) name -> its Python files."""
    units = {path.parent.name: sorted(path.parent.rglob("*.py"))
             for path in REPO.glob("*/__init__.py") if path.parent.name != "tests"}
    for script in TOP_LEVEL_SCRIPTS:
        units[script] = [REPO / f"{script}.py"]
    return units


def imported_units(path: Path, units: set[str]) -> set[str]:
    """Project packages that `path` imports (absolute imports; relative ones stay inside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {name.split(".")[0] for name in names} & units
    return found


def package_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> the files (relative paths) that import it."""
    units = project_units()
    graph: dict[str, dict[str, list[str]]] = {unit: {} for unit in units}
    for unit, files in units.items():
        for path in files:
            for other in imported_units(path, set(units)) - {unit}:
                graph[unit].setdefault(other, []).append(str(path.relative_to(REPO)))
    return graph


def test_every_package_has_a_layer_in_the_readme():
    named = set().union(*readme_layers())
    missing = sorted(set(project_units()) - named)
    assert not missing, f"Packages without a layer in README.md's 'Import layers' line: {missing}"


def layer_violations(graph: dict[str, dict[str, list[str]]], layers: list[set[str]]) -> list[str]:
    layer_of = {name: index for index, group in enumerate(layers) for name in group}
    return [f"{unit} (layer {layer_of[unit]}) imports {other} (layer {layer_of[other]}) in {files[0]}"
            for unit, imports in graph.items() for other, files in imports.items()
            if layer_of[other] >= layer_of[unit]]


def import_cycle(graph: dict[str, dict[str, list[str]]]) -> str | None:
    """One cycle of the package graph as "a -> b -> a (file)", or None."""
    state: dict[str, str] = {}  # unit -> "open" while on the current path, "done" after

    def visit(unit: str, path: list[str]) -> str | None:
        state[unit] = "open"
        for other in sorted(graph[unit]):
            if state.get(other) == "open":
                chain = path + [unit]
                return " -> ".join(chain[chain.index(other):] + [other]) + f" ({graph[unit][other][0]})"
            if other not in state and (found := visit(other, path + [unit])):
                return found
        state[unit] = "done"
        return None

    return next((found for unit in sorted(graph) if unit not in state and (found := visit(unit, []))), None)


def test_no_package_imports_a_higher_layer_or_a_package_of_its_own_layer():
    wrong = layer_violations(package_graph(), readme_layers())
    assert not wrong, "\n".join(wrong)


def test_packages_import_without_cycles():
    assert import_cycle(package_graph()) is None


def test_the_checks_catch_an_upward_import_and_a_cycle():
    graph = {"lm": {"data": ["lm/x.py"]}, "data": {"lm": ["data/y.py"]}, "cli": {"lm": ["cli.py"]}}
    assert layer_violations(graph, [{"lm", "data"}, {"cli"}]) == [
        "lm (layer 0) imports data (layer 0) in lm/x.py", "data (layer 0) imports lm (layer 0) in data/y.py"]
    assert layer_violations(graph, [{"lm"}, {"data"}, {"cli"}]) == ["lm (layer 0) imports data (layer 1) in lm/x.py"]
    assert import_cycle(graph) == "lm -> data -> lm (data/y.py)"
    assert import_cycle({"a": {"b": ["a.py"]}, "b": {}}) is None


def test_the_checks_see_real_imports():
    """The walk finds what the code plainly imports (else the tests above would pass vacuously)."""
    graph = package_graph()
    assert "lm" in graph["covariance"] and "experiments" in graph["cli"]
    assert "retrieval" in graph["experiments"]  # imported inside a function (discovery)
