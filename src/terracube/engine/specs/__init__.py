"""The openEO process descriptions served at GET /processes (openeo-processes 2.0.0-rc.2).

The official definitions are not part of this repository (docs: DESIGN.md, "Reference
material"). They are read at run time from the `openeo-driver` wheel, which ships them as JSON
files, and brought to 2.0.0-rc.2 with our own edits and additions: the JSON files of
`patches/` and `definitions/` next to this module (read by `overrides.py`).

openeo-driver is installed without its dependencies (we only read its data files and never
import it), so it is not listed in pyproject.toml; the install step is `OPENEO_DRIVER_PIP_LINE`.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from terracube.engine.processes import hydrology
from terracube.engine.specs.overrides import Pointer, SpecPatch, load_definitions, load_patches

SPEC_PACKAGE = "openeo_driver"
SPEC_PACKAGE_VERSION = "0.136.0a4"  # the version PATCHES were written against
OPENEO_DRIVER_PIP_LINE = f'pip install --no-deps "openeo-driver=={SPEC_PACKAGE_VERSION}"'

# Folders of <package>/specs/openeo-processes, lowest precedence first: 2.x wins over the
# experimental extras of the driver (ML models, export_workspace), which win over 1.x.
SPEC_LAYERS = ("1.x", "1.x/proposals", "experimental", "2.x/proposals", "2.x")

# Key order of a served description (the order the openEO API documents them in).
_KEY_ORDER = (
    "id",
    "summary",
    "description",
    "categories",
    "experimental",
    "deprecated",
    "parameters",
    "returns",
    "exceptions",
    "examples",
    "links",
)


class ProcessSpecsUnavailable(RuntimeError):
    """The installed package with the official process definitions is missing or unusable."""


def process_description(process_id: str) -> dict[str, Any] | None:
    """The full openEO description of a process, or None if we have none for `process_id`."""
    description = _descriptions().get(process_id)
    return copy.deepcopy(description) if description is not None else None


def shared_description(process_id: str) -> Mapping[str, Any] | None:
    """The description of a process as loaded once, not a copy: for reading only (the
    argument checks read 30 of them per request, and copying them cost 10-20 ms)."""
    return _descriptions().get(process_id)


def process_descriptions(ids: Iterable[str]) -> list[dict[str, Any]]:
    """Descriptions of the given process ids, sorted by id; ids without one are left out."""
    known = _descriptions()
    return [copy.deepcopy(known[pid]) for pid in sorted(set(ids)) if pid in known]


def described_process_ids() -> frozenset[str]:
    """Every process id we have a description for (implemented or not)."""
    return frozenset(_descriptions())


def packaged_specs_root(package: str = SPEC_PACKAGE) -> Path:
    """The folder `specs/openeo-processes` of the installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ProcessSpecsUnavailable(
            f"The process descriptions for /processes are read from the Python package "
            f"{package!r}, which is not installed. Install it without its dependencies: "
            f"{OPENEO_DRIVER_PIP_LINE}"
        )
    for location in spec.submodule_search_locations:
        root = Path(location) / "specs" / "openeo-processes"
        if (root / "2.x").is_dir():
            return root
    raise ProcessSpecsUnavailable(
        f"The installed package {package!r} has no specs/openeo-processes/2.x folder; "
        f"install the version the overrides were written for: {OPENEO_DRIVER_PIP_LINE}"
    )


@functools.cache
def _descriptions() -> dict[str, dict[str, Any]]:
    """All descriptions by id, loaded and patched once per process."""
    descriptions = _load_packaged(packaged_specs_root())
    for process_id, patch in load_patches().items():
        if process_id not in descriptions:
            raise ProcessSpecsUnavailable(
                f"Process {process_id!r} is missing from the installed {SPEC_PACKAGE!r}; "
                f"install the version the overrides were written for: {OPENEO_DRIVER_PIP_LINE}"
            )
        _apply_patch(process_id, descriptions[process_id], patch)
    for process_id, definition in our_definitions().items():
        descriptions[process_id] = copy.deepcopy(definition)
    return {pid: _ordered(d) for pid, d in descriptions.items()}


def our_definitions() -> dict[str, dict[str, Any]]:
    """The complete descriptions written by us: definitions/*.json, and the processes of ours
    that keep their descriptions next to their code (hydrology)."""
    return {**load_definitions(), **hydrology.DESCRIPTIONS}


def _load_packaged(root: Path) -> dict[str, dict[str, Any]]:
    descriptions: dict[str, dict[str, Any]] = {}
    for layer in SPEC_LAYERS:
        folder = root / layer
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and "id" in data and "parameters" in data:
                descriptions[data["id"]] = data
    return descriptions


def _apply_patch(process_id: str, description: dict[str, Any], patch: SpecPatch) -> None:
    for old, new in patch.rename.items():
        _resolve(process_id, description, ("parameters", old))["name"] = new
    for pointer, value in patch.set.items():
        parent = _resolve(process_id, description, pointer[:-1])
        key = pointer[-1]
        if isinstance(parent, list):
            parent[_index(process_id, parent, key, pointer)] = copy.deepcopy(value)
        else:
            parent[key] = copy.deepcopy(value)
    for pointer in patch.drop:
        parent = _resolve(process_id, description, pointer[:-1])
        if isinstance(parent, list):
            del parent[_index(process_id, parent, pointer[-1], pointer)]
        else:
            parent.pop(pointer[-1], None)


def _resolve(process_id: str, node: Any, pointer: Pointer) -> Any:
    for depth, key in enumerate(pointer):
        if isinstance(node, list):
            node = node[_index(process_id, node, key, pointer[: depth + 1])]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            raise _patch_mismatch(process_id, pointer[: depth + 1])
    return node


def _index(process_id: str, items: list, key: str | int, pointer: Pointer) -> int:
    """Position in `items` of an index, or of the element whose `name` is `key`."""
    if isinstance(key, int):
        if -len(items) <= key < len(items):
            return key
    else:
        for i, item in enumerate(items):
            if isinstance(item, dict) and item.get("name") == key:
                return i
    raise _patch_mismatch(process_id, pointer)


def _patch_mismatch(process_id: str, pointer: Pointer) -> ProcessSpecsUnavailable:
    where = "/".join(str(k) for k in pointer)
    return ProcessSpecsUnavailable(
        f"The packaged description of {process_id!r} has no {where!r} to patch; install the "
        f"version the overrides were written for: {OPENEO_DRIVER_PIP_LINE}"
    )


def _ordered(description: dict[str, Any]) -> dict[str, Any]:
    head = {k: description[k] for k in _KEY_ORDER if k in description}
    return head | {k: v for k, v in description.items() if k not in head}
