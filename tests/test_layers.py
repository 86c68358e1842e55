"""The layer map is true: inner layers never import outer ones, and only the Ray layers import ``ray``.

Layers, inner to outer (README "Layout")::

    messages  (messages.py, fixed.py, _exceptions.py, _allocator.py, _files.py, orders.py, logs.py)
    core      venues    data    strategies    backtest    search    actors    interfaces

``config.py`` turns config files into core values: it may import up to ``venues`` and nothing above. ``testing/`` is
the test kit: it may import anything below ``actors``. The package's ``__init__`` is the public facade (lazy imports
of every layer): it counts as outermost, so no module of the package imports it. ``ray`` may be imported only in
``search``, ``actors`` and ``interfaces``.

The graph is read from the source with :mod:`ast` (every ``import`` statement, at module level, inside functions and
under ``TYPE_CHECKING`` alike), so the check needs no imports of the package and sees imports that run only on
some paths. A module outside the map (a new top-level module or package) fails the check until it is placed.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

import veloz_actors

PACKAGE = "veloz_actors"
LAYERS = ("messages", "core", "venues", "data", "strategies", "backtest", "search", "actors", "interfaces")
RANK = {name: rank for rank, name in enumerate(LAYERS)}
# where the top-level modules and packages that are not a layer of their own sit
PLACED = {
    "messages": "messages",
    "fixed": "messages",
    "_exceptions": "messages",
    "_allocator": "messages",
    "_files": "messages",  # files replaced whole (reports, caches): the standard library only
    "orders": "messages",  # the PlaceOrder builder: messages, fixed and _exceptions only
    "logs": "messages",  # the one logging set-up (CLI, engine, actors): messages, fixed and _exceptions only
    "config": "venues",  # may import core and venues, nothing above
}
TESTING_RANK = RANK["actors"] - 0.5  # the test kit: anything below actors
FACADE_RANK = len(LAYERS)  # veloz_actors/__init__.py
RAY_LAYERS = frozenset({"search", "actors", "interfaces"})


@dataclass(frozen=True)
class Import:
    target: str  # absolute dotted module name (for ``from X import a``: X.a when X is the package root, else X)
    line: int


def module_name(root: Path, path: Path) -> str:
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(source: str, module: str, *, is_package: bool) -> list[Import]:
    """Every module ``source`` imports, relative imports resolved against ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base_parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base == PACKAGE:  # ``from veloz_actors import x``: x is the module that matters
                found += [Import(f"{base}.{alias.name}", node.lineno) for alias in node.names]
            else:
                found.append(Import(base, node.lineno))
    return sorted(found, key=lambda i: i.line)


def import_graph(root: Path) -> dict[str, list[Import]]:
    """Module name -> what it imports, for every ``.py`` file under ``root`` (the package directory)."""
    graph: dict[str, list[Import]] = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path)
        graph[name] = imports_of(path.read_text(), name, is_package=path.name == "__init__.py")
    return graph


def layer_of(module: str) -> str | None:
    """The layer name of one of the package's modules (``testing``/``facade`` for the two special places)."""
    parts = module.split(".")
    if parts == [PACKAGE]:
        return "facade"
    top = parts[1]
    if top == "testing":
        return "testing"
    return PLACED.get(top) or (top if top in RANK else None)


def rank_of(layer: str) -> float:
    if layer == "testing":
        return TESTING_RANK
    if layer == "facade":
        return FACADE_RANK
    return RANK[layer]


def violations(graph: dict[str, list[Import]]) -> list[str]:
    """What breaks the layer map in ``graph``, one line per offending import (empty when the map holds)."""
    problems: list[str] = []
    for module, imports in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module}: not in the layer map (place it in tests/test_layers.py and the README)")
            continue
        for imp in imports:
            top = imp.target.split(".")[0]
            if top == "ray":
                if layer not in RAY_LAYERS:
                    problems.append(f"{module}:{imp.line} imports {imp.target}, but only {sorted(RAY_LAYERS)} may")
                continue
            if top != PACKAGE:
                continue
            target_layer = layer_of(imp.target)
            if target_layer is None and imp.target.count(".") == 1:
                target_layer = "facade"  # ``from veloz_actors import Name``: a name of the public facade
            if target_layer is None:
                problems.append(f"{module}:{imp.line} imports {imp.target}, which is not in the layer map")
            elif rank_of(target_layer) > rank_of(layer):
                problems.append(f"{module}:{imp.line} ({layer}) imports {imp.target} ({target_layer}), an outer layer")
    return problems


# ------------------------------------------------------------------------------------------------------ the package


def test_the_package_keeps_its_layer_map() -> None:
    graph = import_graph(Path(veloz_actors.__file__).parent)
    assert f"{PACKAGE}.core" in graph and f"{PACKAGE}.interfaces.cli" in graph
    problems = violations(graph)
    assert not problems, "imports against the layer map:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------------ the check


def test_an_inner_layer_importing_an_outer_one_is_reported() -> None:
    graph = {
        "veloz_actors.core.book": [Import("veloz_actors.backtest.loaders", 7)],
        "veloz_actors.backtest.runner": [Import("veloz_actors.core.book", 3), Import("veloz_actors.data.bars", 4)],
    }
    assert violations(graph) == [
        "veloz_actors.core.book:7 (core) imports veloz_actors.backtest.loaders (backtest), an outer layer"
    ]


def test_ray_below_search_is_reported_and_allowed_above() -> None:
    graph = {
        "veloz_actors.strategies.live": [Import("ray", 12)],
        "veloz_actors.testing": [Import("ray.util", 2)],
        "veloz_actors.search.runner": [Import("ray", 20)],
        "veloz_actors.actors.oms": [Import("ray", 1)],
    }
    assert violations(graph) == [
        "veloz_actors.strategies.live:12 imports ray, but only ['actors', 'interfaces', 'search'] may",
        "veloz_actors.testing:2 imports ray.util, but only ['actors', 'interfaces', 'search'] may",
    ]


@pytest.mark.parametrize(
    ("module", "target", "allowed"),
    [
        ("veloz_actors.config", "veloz_actors.venues.engine", True),
        ("veloz_actors.config", "veloz_actors.data.loaders", False),
        ("veloz_actors.testing", "veloz_actors.search.plan", True),
        ("veloz_actors.testing", "veloz_actors.actors.api", False),
        ("veloz_actors.core.kernel", "veloz_actors.testing", False),
        ("veloz_actors.actors.api", "veloz_actors.interfaces.cli", False),
        ("veloz_actors.interfaces.cli", "veloz_actors.actors.api", True),
        ("veloz_actors.orders", "veloz_actors.core.oms", False),
        ("veloz_actors", "veloz_actors.actors.api", True),
        ("veloz_actors.interfaces.cli", "veloz_actors", False),
    ],
)
def test_the_special_places_of_config_the_test_kit_and_the_facade(module: str, target: str, allowed: bool) -> None:
    assert (violations({module: [Import(target, 1)]}) == []) is allowed


def test_a_module_outside_the_map_is_reported() -> None:
    assert violations({"veloz_actors.plugins.x": []}) == [
        "veloz_actors.plugins.x: not in the layer map (place it in tests/test_layers.py and the README)"
    ]


def test_a_name_from_the_facade_counts_as_the_outermost_layer() -> None:
    assert violations({"veloz_actors.core.oms": [Import("veloz_actors.InvalidInput", 3)]}) == [
        "veloz_actors.core.oms:3 (core) imports veloz_actors.InvalidInput (facade), an outer layer"
    ]
    assert violations({"veloz_actors.core.oms": [Import("veloz_actors", 3)]}) == [
        "veloz_actors.core.oms:3 (core) imports veloz_actors (facade), an outer layer"
    ]


def test_the_graph_reader_sees_relative_and_function_level_imports(tmp_path: Path) -> None:
    root = tmp_path / PACKAGE
    (root / "core").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "core" / "__init__.py").write_text("from .book import Book\n")
    (root / "core" / "book.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from .. import messages\n"
        "if TYPE_CHECKING:\n"
        "    from ..backtest.l2 import L2Context\n"
        "def bench():\n"
        "    import ray\n"
        "    from ..data.loaders import load_market_events\n"
    )
    graph = import_graph(root)
    assert [i.target for i in graph["veloz_actors.core.book"]] == [
        "typing",
        "veloz_actors.messages",
        "veloz_actors.backtest.l2",
        "ray",
        "veloz_actors.data.loaders",
    ]
    assert graph["veloz_actors.core"] == [Import("veloz_actors.core.book", 1)]
    assert violations(graph) == [
        "veloz_actors.core.book:4 (core) imports veloz_actors.backtest.l2 (backtest), an outer layer",
        "veloz_actors.core.book:6 imports ray, but only ['actors', 'interfaces', 'search'] may",
        "veloz_actors.core.book:7 (core) imports veloz_actors.data.loaders (data), an outer layer",
    ]
