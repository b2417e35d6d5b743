"""Our edits and additions to the packaged process descriptions, read from the JSON files here.

`specs/__init__.py` reads the descriptions shipped in the `openeo-driver` wheel. That set
predates openeo-processes 2.0.0-rc.2 in places, so this folder holds, written by us:

* `patches/<process id>.json`: the edits that make the served parameters (names, order,
  optional, default, schema), the return schema and the experimental/deprecated flags equal
  those of 2.0.0-rc.2: `{"id", "why", "rename": {old: new}, "set": [{"pointer", "value"}],
  "drop": [pointer]}`, applied in the order rename, set, drop. A pointer is a list of keys into
  the description; inside a list of named objects (parameters, the parameters of a child
  process graph) a string selects the element by its `name`, an integer by position. Schemas
  must match the specification to the letter, so text inside a schema is reproduced exactly;
  prose outside schemas is ours.
* `definitions/<process id>.json`: complete descriptions of processes the package lacks
  (summaries and prose in our own words, schemas exactly as specified).

tests/engine/test_specs.py checks the result against the official definitions in ../shared.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# A path into a process description (see the module docstring).
Pointer = tuple[str | int, ...]


@dataclass(frozen=True)
class SpecPatch:
    """Edits to one packaged process description, applied in the order rename, set, drop."""

    why: str  # what changed in 2.0.0-rc.2, for the reader
    rename: Mapping[str, str] = field(default_factory=dict)  # parameter: old name -> new name
    set: Mapping[Pointer, Any] = field(default_factory=dict)
    drop: tuple[Pointer, ...] = ()


class OverrideFileInvalid(ValueError):
    """A JSON file of this folder does not have the expected shape."""


def _read(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("id") != path.stem:
        raise OverrideFileInvalid(f"{path} must hold an object whose 'id' is {path.stem!r}")
    return data


def _pointer(path: Path, value: Any) -> Pointer:
    if not isinstance(value, list) or not value or not all(
            isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
        raise OverrideFileInvalid(f"{path}: a pointer must be a non-empty list of keys, "
                                  f"got {value!r}")
    return tuple(value)


def _patch(path: Path, data: dict[str, Any]) -> SpecPatch:
    unknown = set(data) - {"id", "why", "rename", "set", "drop"}
    if unknown or not isinstance(data.get("why"), str):
        raise OverrideFileInvalid(f"{path}: needs 'why'; unknown keys: {sorted(unknown)}")
    edits: dict[Pointer, Any] = {}
    for item in data.get("set", []):
        edits[_pointer(path, item.get("pointer"))] = item["value"]
    return SpecPatch(
        why=data["why"],
        rename=dict(data.get("rename", {})),
        set=edits,
        drop=tuple(_pointer(path, p) for p in data.get("drop", [])),
    )


def load_patches(folder: Path = HERE / "patches") -> dict[str, SpecPatch]:
    """Process id -> the edits to its packaged description."""
    return {path.stem: _patch(path, _read(path)) for path in sorted(folder.glob("*.json"))}


def load_definitions(folder: Path = HERE / "definitions") -> dict[str, dict[str, Any]]:
    """Process id -> a complete description written by us."""
    return {path.stem: _read(path) for path in sorted(folder.glob("*.json"))}
