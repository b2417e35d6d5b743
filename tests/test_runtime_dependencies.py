"""Every third-party module imported under src/terracube is provided by a runtime dependency
of pyproject.toml (issue 16, item 2: load_stac needed httpx, which only the test extras had, so
it failed after `make run`)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, packages_distributions, requires
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src" / "terracube"
# Modules imported only where an optional extra is installed, each with the reason.
OPTIONAL = {
    # the course hub (`terracube hub`, extra 'hub', installed by `make hub`)
    module: "hub" for module in ("jupyterhub", "jupyterhub_idle_culler", "jupyterlab",
                                 "jupyter_core", "jupyter_server", "nbformat", "traitlets")
}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*(?:\[([^\]]*)\])?")


def _parse(requirement: str) -> tuple[str, set[str]]:
    """(normalised distribution name, extras) of a requirement string."""
    match = _REQUIREMENT.match(requirement)
    assert match, requirement
    extras = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
    return _normal(match.group(1)), extras


def _declared() -> list[tuple[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [_parse(dep) for dep in project["dependencies"]]


def _top_level_imports() -> dict[str, set[str]]:
    """top-level module -> files importing it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_runtime_dependency():
    runtime = _with_requirements_of(_declared())
    providers = packages_distributions()
    missing = []
    for module, files in sorted(_top_level_imports().items()):
        if module == "terracube" or module in sys.stdlib_module_names or module in OPTIONAL:
            continue
        dists = {_normal(d) for d in providers.get(module, [])}
        if not dists & runtime:
            missing.append(f"{module} (from {', '.join(sorted(dists)) or '?'}; "
                           f"imported in {', '.join(sorted(files))})")
    assert not missing, "imported but not a runtime dependency:\n" + "\n".join(missing)


def _with_requirements_of(declared: list[tuple[str, set[str]]]) -> set[str]:
    """The declared distributions and everything they require (with the extras asked for),
    transitively: importing e.g. `affine` is fine as rasterio requires it."""
    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    todo = [(name, frozenset(extras)) for name, extras in declared]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        names.add(name)
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            continue
        for req in reqs:
            marker = req.partition(";")[2]
            wanted = re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
            if wanted and not set(wanted) & extras:
                continue
            child, child_extras = _parse(req)
            todo.append((child, frozenset(child_extras)))
    return names
