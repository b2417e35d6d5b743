"""The floors of the house: every import of a terracube module runs down a floor or stays on
its own, the engine reaches catalog/, results/ and workspace/ only through its ports
(engine/ports.py), and no two packages import each other, directly or round a cycle.

The source is parsed with `ast`, nothing is imported, so every import counts: at the top of a
file, inside a function, under `if TYPE_CHECKING:`. The table is the one of
docs/internals/architecture.md (and ../shared/DESIGN.md).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "terracube"

# Package (or ground-floor module) below terracube/ -> its floor; a module may import only
# modules of its own floor or of lower ones.
FLOORS = {
    # 0 ground: configuration, openEO errors, SQL, the dask executor, the fetch policy
    "terracube": 0, "settings": 0, "errors": 0, "process_errors": 0, "db": 0, "executor": 0,
    "allocator": 0,  # one malloc arena per process (set in the CLI's main)
    "url_policy": 0,  # which URLs a user may make the server fetch (issue 16)
    # 1 the cube model and what a graph asks of a data source
    "datacube": 1,
    # 2 users and tokens; per-user files
    "auth": 2, "workspace": 2,
    # 3 collection sources; result writers and formats
    "catalog": 3, "results": 3,
    # 4 graph, optimizer, evaluator, registry, processes, the ports it defines
    "engine": 4,
    # 5 user-defined processes
    "udp": 5,
    # 6 the one path that runs a graph
    "processing": 6,
    # 7 batch jobs; map services
    "jobs": 7, "services": 7,
    # 8 HTTP API; the web page
    "api": 8, "web": 8,
    # 9 commands; the course hub
    "cli": 9, "hub": 9,
}
# Lower floors a package must still not import: the engine defines ports for what it needs
# from these (engine/ports.py) and gets their adapters in Services.
FORBIDDEN = {"engine": {"catalog", "results", "workspace"}}


@dataclass(frozen=True)
class Import:
    """One import of a terracube module: where it is, what it imports, whether it is hidden
    inside a function."""

    path: Path
    line: int
    source: str  # the importing module, e.g. terracube.engine.processes.io
    target: str  # the imported module, e.g. terracube.datacube.cube
    in_function: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.where}: {self.source} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    base = SRC.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def unit(module: str) -> str:
    """The package (or ground-floor module) a module belongs to: its floor's entry."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _imports_of(path: Path) -> list[Import]:
    return parse_imports(path.read_text(encoding="utf-8"), path)


def parse_imports(text: str, path: Path) -> list[Import]:
    """The imports of terracube modules in the source `text` of the file `path`."""
    source = module_name(path)
    tree = ast.parse(text, filename=str(path))
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x / from ..engine import y
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            # `from terracube.engine import graph` imports the module terracube.engine.graph
            targets = [f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base
                       for a in node.names]
        for target in dict.fromkeys(targets):
            if target == "terracube" or target.startswith("terracube."):
                found.append(Import(path, node.lineno, source, target, in_function))
        inside = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                  ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    return found


def all_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in _imports_of(path)]


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return all_imports()


def test_every_package_has_a_floor() -> None:
    units = {unit(module_name(p)) for p in PACKAGE.rglob("*.py")}
    missing = sorted(units - set(FLOORS))
    assert not missing, f"add these to FLOORS in {Path(__file__).name}: {missing}"


def violations(imports: list[Import]) -> list[str]:
    """The imports that run up a floor or reach a package forbidden to the importer."""
    wrong = []
    for imp in imports:
        here, there = unit(imp.source), unit(imp.target)
        if here not in FLOORS or there not in FLOORS:
            continue  # test_every_package_has_a_floor says so
        if FLOORS[there] > FLOORS[here]:
            wrong.append(f"{imp}  (floor {FLOORS[here]} {here} -> floor {FLOORS[there]} "
                         f"{there})")
        elif there in FORBIDDEN.get(here, ()):
            wrong.append(f"{imp}  ({here} reaches {there} only through its ports)")
    return wrong


def test_no_import_runs_up_a_floor(imports: list[Import]) -> None:
    wrong = violations(imports)
    assert not wrong, "imports against the floors:\n" + "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
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
            connect(node)
    return found


def _describe_cycles(imports: list[Import], key: Callable[[str], str]) -> list[str]:
    edges: dict[str, set[str]] = defaultdict(set)
    by_edge: dict[tuple[str, str], list[Import]] = defaultdict(list)
    for imp in imports:
        a, b = key(imp.source), key(imp.target)
        if a != b:
            edges[a].add(b)
            by_edge[a, b].append(imp)
    report = []
    for component in _cycles(edges):
        members = set(component)
        lines = [f"cycle between {', '.join(component)}:"]
        for (a, b), found in sorted(by_edge.items()):
            if a in members and b in members:
                lines += [f"    {imp}" for imp in found]
        report.append("\n".join(lines))
    return report


def test_no_import_cycle_between_packages(imports: list[Import]) -> None:
    cycles = _describe_cycles(imports, unit)
    assert not cycles, "\n".join(cycles)


def test_no_import_cycle_between_modules(imports: list[Import]) -> None:
    """Within a package too, no two modules import each other (also not from inside a
    function, which only postpones the cycle to the first call)."""
    cycles = _describe_cycles(imports, lambda module: module)
    assert not cycles, "\n".join(cycles)


def test_the_scanner_sees_every_kind_of_import() -> None:
    """Top-level, function-level, TYPE_CHECKING and relative imports, with their lines, and
    `from package import name` resolved to the module when `name` is one."""
    text = (
        "from typing import TYPE_CHECKING\n"
        "from terracube import errors\n"
        "from terracube.engine import graph as graphs, ports\n"
        "if TYPE_CHECKING:\n"
        "    from terracube.jobs.store import JobStore\n"
        "def load():\n"
        "    from terracube.catalog import Catalog\n"
        "    import terracube.results.formats\n"
        "from . import optimize\n"
        "from ..datacube.cube import RasterCube\n"
    )
    found = parse_imports(text, PACKAGE / "engine" / "example.py")
    assert [(i.line, i.target, i.in_function) for i in found] == [
        (2, "terracube.errors", False),
        (3, "terracube.engine.graph", False),
        (3, "terracube.engine.ports", False),
        (5, "terracube.jobs.store", False),
        (7, "terracube.catalog", True),
        (8, "terracube.results.formats", True),
        (9, "terracube.engine.optimize", False),
        (10, "terracube.datacube.cube", False),
    ]
    wrong = violations(found)
    assert [w.split(": ")[0] for w in wrong] == [
        "src/terracube/engine/example.py:5", "src/terracube/engine/example.py:7",
        "src/terracube/engine/example.py:8"]
    assert "floor 4 engine -> floor 7 jobs" in wrong[0]
    assert "only through its ports" in wrong[1]


def test_cycles_are_found_with_the_imports_that_make_them() -> None:
    imports = [Import(PACKAGE / "a.py", 1, "terracube.catalog.x", "terracube.results.y", True),
               Import(PACKAGE / "b.py", 2, "terracube.results.y", "terracube.catalog.z", False),
               Import(PACKAGE / "c.py", 3, "terracube.results.y", "terracube.errors", False)]
    (cycle,) = _describe_cycles(imports, unit)
    assert cycle.splitlines() == [
        "cycle between catalog, results:",
        "    src/terracube/a.py:1: terracube.catalog.x imports terracube.results.y",
        "    src/terracube/b.py:2: terracube.results.y imports terracube.catalog.z"]
