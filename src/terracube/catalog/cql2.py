"""openEO property conditions (the `properties` of load_collection/load_stac) as a CQL2-JSON
filter for the item search of a STAC API.

The filter only has to let through every item that satisfies the conditions: the items an API
returns are checked again with the openEO processes themselves (exact openEO semantics, and
APIs that ignore a filter). So a condition that has no faithful CQL2 form is left out of an
`and` rather than approximated, and a filter is sent only when the API says it understands one.

Translated: a single `eq`, `neq`, `lt`, `lte`, `gt`, `gte`, `between` or `array_contains` node
comparing the property with a constant, and `and`/`or` of such nodes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Conformance classes (STAC API item search filter extension and OGC CQL2), any version.
_FILTER_CLASSES = (
    re.compile(r"^https://api\.stacspec\.org/v1\.[^/]+/item-search#filter$"),
    re.compile(r"^http://www\.opengis\.net/spec/ogcapi-features-3/1\.0/conf/filter$"),
)
_CQL2 = "http://www.opengis.net/spec/cql2/1.0/conf/"
_CQL2_JSON = _CQL2 + "cql2-json"
_CQL2_TEXT = _CQL2 + "cql2-text"
_ADVANCED_COMPARISON = _CQL2 + "advanced-comparison-operators"
_ARRAY_FUNCTIONS = _CQL2 + "array-functions"

FILTER_LANG = "cql2-json"

# openEO comparison process -> CQL2 operator, and the operator with its operands swapped.
_COMPARISONS = {"eq": "=", "neq": "<>", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
_SWAPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


@dataclass(frozen=True)
class Cql2Support:
    """What of CQL2 a STAC API says it understands (its landing page's `conformsTo`)."""

    filter: bool = False  # item search takes a CQL2-JSON `filter` (basic CQL2)
    advanced_comparison: bool = False  # `in`, `between`, `like`
    array_functions: bool = False  # `a_contains`, ...

    @classmethod
    def from_conformance(cls, conforms_to: Iterable[str]) -> Cql2Support:
        uris = {str(u).rstrip("/") for u in conforms_to}
        has_filter = any(p.match(u) for p in _FILTER_CLASSES for u in uris)
        # An API that names its CQL2 encodings must name the JSON one; one that names none
        # (older filter extension drafts) takes JSON in POST requests.
        encodings = uris & {_CQL2_JSON, _CQL2_TEXT}
        json_ok = not encodings or _CQL2_JSON in encodings
        return cls(filter=has_filter and json_ok,
                   advanced_comparison=_ADVANCED_COMPARISON in uris,
                   array_functions=_ARRAY_FUNCTIONS in uris)


class ConditionGraph(Protocol):
    """A property condition as the engine passes it (engine.evaluate.Callback)."""

    graph: dict
    scope: dict


def property_filter(properties: Mapping[str, Any], support: Cql2Support) -> dict | None:
    """A CQL2-JSON expression for the conditions per property name, or None when the API
    takes no filter or none of the conditions can be expressed."""
    if not support.filter:
        return None
    parts = [condition_filter(name, cond, support) for name, cond in properties.items()]
    return _all_of([p for p in parts if p is not None])


def condition_filter(name: str, condition: Any, support: Cql2Support) -> dict | None:
    """CQL2-JSON for one property's condition (a callback or a plain value to equal)."""
    if _is_scalar(condition):
        return _compare(name, "=", condition)
    graph = getattr(condition, "graph", None)
    if graph is None and isinstance(condition, Mapping):
        graph = condition.get("process_graph")
    if not isinstance(graph, Mapping) or not graph:
        return None
    scope = getattr(condition, "scope", None) or {}
    results = [nid for nid, node in graph.items()
               if isinstance(node, Mapping) and node.get("result")]
    if len(results) != 1:
        return None
    return _Translation(name, graph, scope, support).node(results[0], depth=0)


# --- translation ----------------------------------------------------------------------------
_PROPERTY = object()  # an argument that is the property's value (the callback's `value`)
_UNKNOWN = object()  # an argument that is neither the property nor a constant
_MAX_DEPTH = 32


class _Translation:
    def __init__(self, name: str, graph: Mapping, scope: Mapping, support: Cql2Support) -> None:
        self.name = name
        self.graph = graph
        self.scope = scope
        self.support = support

    def node(self, nid: str, depth: int) -> dict | None:
        node = self.graph.get(nid)
        if not isinstance(node, Mapping) or depth > _MAX_DEPTH or node.get("namespace"):
            return None
        pid = node.get("process_id")
        args = node.get("arguments") or {}
        if pid in ("and", "or"):
            x, y = (self.boolean(args.get(k), depth) for k in ("x", "y"))
            if pid == "and":
                # A condition left out of an `and` only lets more items through.
                return _all_of([p for p in (x, y) if p is not None])
            return None if x is None or y is None else _any_of([x, y])
        if pid in _COMPARISONS:
            if pid in ("eq", "neq") and (args.get("delta") is not None or
                                         args.get("case_sensitive", True) is not True):
                return None
            return self.comparison(_COMPARISONS[pid], args.get("x"), args.get("y"))
        if pid == "between":
            return self.between(args)
        if pid == "array_contains":
            return self.array_contains(args.get("data"), args.get("value"))
        return None

    def boolean(self, raw: Any, depth: int) -> dict | None:
        if isinstance(raw, Mapping) and set(raw) == {"from_node"}:
            return self.node(raw["from_node"], depth + 1)
        return None

    def operand(self, raw: Any) -> Any:
        """_PROPERTY, a constant, or _UNKNOWN."""
        if isinstance(raw, Mapping):
            if set(raw) == {"from_parameter"}:
                pname = raw["from_parameter"]
                if pname == "value":
                    return _PROPERTY
                if pname in self.scope:
                    value = self.scope[pname]
                    return value if _is_constant(value) else _UNKNOWN
            return _UNKNOWN
        return raw if _is_constant(raw) else _UNKNOWN

    def comparison(self, op: str, x_raw: Any, y_raw: Any) -> dict | None:
        x, y = self.operand(x_raw), self.operand(y_raw)
        if x is _PROPERTY and _is_scalar(y):
            return _compare(self.name, op, y)
        if y is _PROPERTY and _is_scalar(x):
            return _compare(self.name, _SWAPPED[op], x)
        return None

    def between(self, args: Mapping) -> dict | None:
        if self.operand(args.get("x")) is not _PROPERTY:
            return None
        low, high = self.operand(args.get("min")), self.operand(args.get("max"))
        exclude_max = self.operand(args.get("exclude_max", False))
        if not (_is_number(low) and _is_number(high)) or not isinstance(exclude_max, bool):
            return None
        # Always as two basic comparisons: CQL2's `between` includes the upper bound.
        return _all_of([_compare(self.name, ">=", low),
                        _compare(self.name, "<" if exclude_max else "<=", high)])

    def array_contains(self, data_raw: Any, value_raw: Any) -> dict | None:
        data, value = self.operand(data_raw), self.operand(value_raw)
        if data is _PROPERTY and _is_scalar(value):
            # The property is an array (e.g. `instruments`) holding the constant.
            if not self.support.array_functions:
                return None
            return {"op": "a_contains", "args": [{"property": self.name}, [value]]}
        if value is _PROPERTY and isinstance(data, list) and data \
                and all(_is_scalar(v) for v in data):
            # The property is one of a list of constants (e.g. platform in [...]).
            if self.support.advanced_comparison:
                return {"op": "in", "args": [{"property": self.name}, list(data)]}
            return _any_of([_compare(self.name, "=", v) for v in data])
        return None


def _compare(name: str, op: str, value: Any) -> dict | None:
    if op not in ("=", "<>") and not _is_number(value):
        return None  # openEO's lt/gt/... are false for anything but numbers
    return {"op": op, "args": [{"property": name}, value]}


def _all_of(parts: list[dict | None]) -> dict | None:
    flat: list[dict] = []
    for p in parts:
        if p is None:
            continue
        flat.extend(p["args"] if p.get("op") == "and" else [p])
    if not flat:
        return None
    return flat[0] if len(flat) == 1 else {"op": "and", "args": flat}


def _any_of(parts: list[dict | None]) -> dict | None:
    if not parts or any(p is None for p in parts):
        return None
    return parts[0] if len(parts) == 1 else {"op": "or", "args": list(parts)}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, bool)) or _is_number(v)


def _is_constant(v: Any) -> bool:
    return _is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v))
