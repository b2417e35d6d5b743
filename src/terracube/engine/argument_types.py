"""Static checks of arguments against the processes' JSON schemas (POST /validation, explain).

Without reading data, every literal argument (a JSON value, not a reference or a callback)
is checked against the schema of its parameter in the process description served at
GET /processes (or the declared schema of a user-defined process); every `from_parameter`
inside a callback must name a parameter of that callback or of an enclosing process; a
`from_node` is checked where the kinds are certain (a data cube where only scalars are allowed
or the other way round: `_reference_problem`).

The check is deliberately lenient where a schema says more than JSON types can tell: a
`subtype` is only used to know that a literal can never be a data cube or a labeled array's
cube; formats, enums and bounds are left to the process code. So a graph it accepts does not
fail at /result because of an argument's JSON type.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from terracube import errors
from terracube.engine.specs import shared_description

# Subtypes whose values only references can give (a literal JSON value never is one).
_NOT_LITERAL = frozenset({"datacube", "raster-cube", "vector-cube", "ml-model"})
_KIND = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
         type(None): "null", int: "a number", float: "a number"}

UdpSchemas = Callable[[str, Any], list[dict[str, Any]] | None]


def _is_reference(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in (
        "from_node", "from_parameter", "from_argument")


_GEOJSON_TYPES = frozenset({"FeatureCollection", "Feature", "Point", "MultiPoint", "LineString",
                            "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection"})


def _is_geojson(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") in _GEOJSON_TYPES


def _is_vector_cube(schema: dict) -> bool:
    """A vector cube: subtype vector-cube, or a datacube with a geometry dimension."""
    if schema.get("subtype") == "vector-cube":
        return True
    dims = schema.get("dimensions")
    return schema.get("subtype") == "datacube" and isinstance(dims, list) and any(
        isinstance(d, dict) and d.get("type") == "geometry" for d in dims)


def _has_references(value: Any) -> bool:
    if isinstance(value, dict):
        if _is_reference(value) or "process_graph" in value:
            return True
        return any(_has_references(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_references(v) for v in value)
    return False


def _type_matches(value: Any, type_: str) -> bool:
    if type_ == "null":
        return value is None
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if type_ == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "array":
        return isinstance(value, list)
    if type_ == "object":
        return isinstance(value, dict)
    return True  # a type we do not know: do not guess


def matches(value: Any, schema: Any) -> bool:
    """Whether a literal JSON value can be an argument of this schema (or list of schemas)."""
    if isinstance(schema, list):
        return not schema or any(matches(value, s) for s in schema)
    if not isinstance(schema, dict):
        return True
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return matches(value, schema[key])
    if isinstance(schema.get("allOf"), list) and not all(matches(value, s)
                                                         for s in schema["allOf"]):
        return False
    if _has_references(value):
        return True  # values only known when it runs
    if _is_vector_cube(schema) and _is_geojson(value):
        # GeoJSON becomes a vector cube, as on CDSE (fit_*_random_forest target,
        # apply_polygon's geometries in the community examples)
        return True
    if schema.get("subtype") in _NOT_LITERAL:
        return False
    types = schema.get("type")
    if types is None:
        return True
    types = types if isinstance(types, list) else [types]
    if not any(_type_matches(value, t) for t in types if isinstance(t, str)):
        return False
    items = schema.get("items")
    if isinstance(value, list) and isinstance(items, (dict, list)) and "array" in types:
        return all(matches(v, items) for v in value)
    return True


def _parameter_schemas(pid: str) -> list[dict[str, Any]] | None:
    description = shared_description(pid)  # read only
    return None if description is None else description.get("parameters") or []


def type_problems(graph: dict[str, Any], is_predefined: Callable[[str], bool],
                  udp_parameters: UdpSchemas | None = None,
                  scope: frozenset[str] | None = None) -> list[errors.OpenEOError]:
    """Wrong-type literal arguments and unknown parameter references of `graph` (and its
    callbacks). `scope`: the parameter names the graph may reference (None: unknown, e.g. a
    bare top-level graph whose process parameters are not declared)."""
    problems: list[errors.OpenEOError] = []
    for nid, node in graph.items():
        if not isinstance(node, dict):
            continue
        pid = node.get("process_id")
        args = node.get("arguments") or {}
        if not isinstance(pid, str) or not isinstance(args, dict):
            continue
        specs = _parameter_schemas(pid) if is_predefined(pid) else (
            udp_parameters(pid, node.get("namespace")) if udp_parameters else None)
        by_name = {p.get("name"): p for p in specs or [] if isinstance(p, dict)}
        for name, value in args.items():
            spec = by_name.get(name)
            schema = spec.get("schema") if spec else None
            if scope is not None:
                problems.extend(_unknown_references(value, scope, nid, name))
            if schema is not None and not _is_reference(value) and not matches(value, schema):
                problems.append(errors.ProcessParameterInvalid(
                    f"The value passed for parameter '{name}' in process '{pid}' is invalid: "
                    f"it is {_KIND.get(type(value), 'a value')} ({_short(value)}), but must "
                    f"be {_expected(schema)}.", node_id=nid, argument=name))
            if schema is not None and isinstance(value, dict) and "from_node" in value \
                    and _is_reference(value):
                problem = _reference_problem(graph, value["from_node"], schema,
                                             is_predefined, pid)
                if problem:
                    problems.append(errors.ProcessParameterInvalid(
                        f"The value passed for parameter '{name}' in process '{pid}' is "
                        f"invalid: {problem}.", node_id=nid, argument=name))
            for child, params in _callbacks(value, schema):
                params = [*params, *_OLDER_CALLBACK_PARAMETERS.get((pid, name), ())]
                inner = frozenset(params) | (scope or frozenset())
                for p in type_problems(child, is_predefined, udp_parameters,
                                       inner if scope is not None or params else None):
                    problems.append(p.at(nid, name))
    return problems


# Callback parameters of older definitions that the processes still pass: the model function
# of fit_curve/predict_curve called its variable `data` in openEO 1.x (the openEO Platform's
# UC6 graphs and change_detection_utils), `x` now.
_OLDER_CALLBACK_PARAMETERS = {("fit_curve", "function"): ("data",),
                              ("predict_curve", "function"): ("data",)}

# What a result or a parameter can be, as far as the checks of references go.
_CUBES = frozenset({"datacube", "raster-cube", "vector-cube"})
_SCALARS = frozenset({"number", "integer", "string", "boolean", "null"})
# Processes that take more than their schema says where it matters here: save_result writes
# numbers, arrays and objects as JSON too.
_LENIENT = frozenset({"save_result"})


def _alternatives(schema: Any) -> list[dict[str, Any]]:
    """The alternatives of a schema (a list, anyOf/oneOf flattened); [{}] for 'anything'."""
    if isinstance(schema, list):
        return [a for s in schema for a in _alternatives(s)] or [{}]
    if not isinstance(schema, dict):
        return [{}]
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            return _alternatives(schema[key])
    return [schema]


def _kind(schema: dict[str, Any]) -> str:
    """'cube', 'scalar' (only JSON scalars) or 'other' (anything else, e.g. no type)."""
    if schema.get("subtype") in _CUBES:
        return "cube"
    types = schema.get("type")
    types = types if isinstance(types, list) else [types]
    if types and all(isinstance(t, str) and t in _SCALARS for t in types) \
            and not schema.get("subtype"):
        return "scalar"
    return "other"


def _reference_problem(graph: dict[str, Any], ref: Any, schema: Any,
                       is_predefined: Callable[[str], bool], pid: str) -> str | None:
    """Why the result of node `ref` can never be an argument of this schema, or None.

    Only what is certain from the process descriptions: a node whose result is always a data
    cube passed where only numbers, strings, booleans or null are allowed, or one whose result
    is always such a scalar passed where only a data cube is allowed (both are refused at
    /result too). Results of user-defined processes and of processes that return 'any' value
    are not checked."""
    node = graph.get(ref) if isinstance(ref, str) else None
    source = node.get("process_id") if isinstance(node, dict) else None
    if not isinstance(source, str) or not is_predefined(source) or pid in _LENIENT:
        return None
    description = shared_description(source)  # read only
    returns = (description or {}).get("returns") or {}
    given = {_kind(a) for a in _alternatives(returns.get("schema"))}
    wanted = {_kind(a) for a in _alternatives(schema)}
    if given == {"cube"} and wanted == {"scalar"}:
        return (f"it is the data cube that node '{ref}' ({source}) returns, but must be "
                f"{_expected(schema)} (a process that works on every pixel of a cube goes in "
                "a callback, e.g. of apply or reduce_dimension)")
    if given == {"scalar"} and wanted == {"cube"}:
        return (f"it is the {_expected(returns.get('schema'))} that node '{ref}' ({source}) "
                f"returns, but must be {_expected(schema)}")
    return None


def _callbacks(value: Any, schema: Any) -> list[tuple[dict[str, Any], list[str]]]:
    """(child graph, its parameter names) of every callback in an argument."""
    if isinstance(value, dict) and isinstance(value.get("process_graph"), dict):
        names: list[str] = []
        for s in (schema if isinstance(schema, list) else [schema]):
            if isinstance(s, dict) and s.get("subtype") == "process-graph":
                names += [p["name"] for p in s.get("parameters") or []
                          if isinstance(p, dict) and isinstance(p.get("name"), str)]
        return [(value["process_graph"], names)]
    # Callbacks nested in objects and arrays (e.g. load_collection's `properties`, a mapping of
    # property names to callbacks with the parameter `value`) take their parameters from the
    # schema's `additionalProperties` / `items`.
    schemas = [s for s in (schema if isinstance(schema, list) else [schema]) if isinstance(s, dict)]
    out = []
    if isinstance(value, dict) and not _is_reference(value):
        inner = [s["additionalProperties"] for s in schemas
                 if isinstance(s.get("additionalProperties"), dict)]
        for v in value.values():
            out += _callbacks(v, inner or None)
    elif isinstance(value, list):
        inner = [s["items"] for s in schemas if isinstance(s.get("items"), dict)]
        for v in value:
            out += _callbacks(v, inner or None)
    return out


def _unknown_references(value: Any, scope: frozenset[str], nid: str,
                        name: str) -> list[errors.OpenEOError]:
    found: list[errors.OpenEOError] = []
    if isinstance(value, dict):
        if _is_reference(value) and "from_parameter" in value:
            ref = value["from_parameter"]
            if ref not in scope:
                known = ", ".join(sorted(scope)) or "none"
                found.append(errors.ProcessParameterRequired(
                    f"The parameter '{ref}' is used, but it is no parameter here (the "
                    f"parameters that can be used: {known}).", node_id=nid, argument=name))
        elif "process_graph" not in value:
            for v in value.values():
                found += _unknown_references(v, scope, nid, name)
    elif isinstance(value, list):
        for v in value:
            found += _unknown_references(v, scope, nid, name)
    return found


def _short(value: Any) -> str:
    import json

    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _expected(schema: Any) -> str:
    schemas = schema if isinstance(schema, list) else [schema]
    kinds: list[str] = []
    for s in schemas:
        if not isinstance(s, dict):
            continue
        if s.get("subtype") in _NOT_LITERAL:
            kinds.append(f"a {s['subtype']} (from another node)")
            continue
        types = s.get("type")
        for t in types if isinstance(types, list) else [types]:
            if isinstance(t, str):
                kinds.append({"null": "null", "integer": "an integer", "array": "an array",
                              "object": "an object"}.get(t, f"a {t}"))
    unique = list(dict.fromkeys(kinds))
    return " or ".join(unique) if unique else "of another kind"
