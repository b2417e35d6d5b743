"""Checking a user-defined process before it is stored, and the processes it calls.

The checks follow the request body schema of PUT /process_graphs/{id} (openEO API 1.2,
`process_graph_with_metadata`), so that what GET /process_graphs/{id} sends back is valid
against the response schema too; parameter and return schemas must be valid JSON Schemas.
The graph is checked for its structure, and by udp/store.py for the JSON types of literal
arguments and its parameter references (engine/argument_types.py); whether the user processes
it calls exist is what POST /validation tells (they may be stored later).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from terracube import errors
from terracube.engine import graph as graphs

# openEO `process_id` (and parameter names): ^\w+$ in the API's (ECMAScript) regex dialect,
# where \w is ASCII only.
PROCESS_ID_PATTERN = re.compile(r"^\w+$", re.ASCII)
MAX_PROCESS_ID_LENGTH = 255

IsPredefined = Callable[[str], bool]

_OPTIONAL_STRINGS = ("summary", "description")
_OPTIONAL_BOOLEANS = ("deprecated", "experimental", "public")  # public: shared by URL


def is_valid_process_id(process_id: str) -> bool:
    return (isinstance(process_id, str) and len(process_id) <= MAX_PROCESS_ID_LENGTH
            and PROCESS_ID_PATTERN.match(process_id) is not None)


def check_definition(process_id: str, body: Any) -> dict[str, Any]:
    """The process to store for PUT /process_graphs/{process_id}, or the openEO error.

    The `id` is set to `process_id` (the API says a differing `id` in the body is replaced);
    top-level properties that are null are left out: for `parameters`, `returns`, `summary`
    and `description` null means the same as absent, and the response schemas allow no null.
    """
    if not is_valid_process_id(process_id):
        raise errors.ProcessInvalid(
            f"The process id {process_id!r} is invalid: use 1-{MAX_PROCESS_ID_LENGTH} letters, "
            "digits and underscores (pattern ^\\w+$).")
    if not isinstance(body, dict):
        raise errors.ProcessGraphMissing("The request body must be a process object with a "
                                         "'process_graph'.")
    process = {key: value for key, value in body.items() if value is not None}
    graph = process.get("process_graph")
    if graph is None or graph == {}:
        raise errors.ProcessGraphMissing(
            "The process has no 'process_graph'; send {\"process_graph\": {...}, "
            "\"parameters\": [...], ...}.")
    if not isinstance(graph, dict):
        raise errors.ProcessGraphInvalid("'process_graph' must be an object of process nodes.")
    _check_nodes(graph)
    graphs.validate_structure(graph)
    _check_metadata(process)
    process["id"] = process_id
    return process


def _check_nodes(graph: dict, where: str = "") -> None:
    """The node schema of the API, which the engine's structure check is more lenient about."""
    for nid, node in graph.items():
        label = f"{where}node '{nid}'"
        if not isinstance(node, dict):
            raise errors.ProcessGraphInvalid(f"{label.capitalize()} must be an object.",
                                             node_id=nid)
        pid = node.get("process_id")
        if not isinstance(pid, str) or not PROCESS_ID_PATTERN.match(pid):
            raise errors.ProcessGraphInvalid(
                f"{label.capitalize()} needs a 'process_id' matching ^\\w+$, got {pid!r}.",
                node_id=nid)
        if not isinstance(node.get("arguments"), dict):
            raise errors.ProcessGraphInvalid(
                f"{label.capitalize()} needs 'arguments' (an object, {{}} if there are none).",
                node_id=nid)
        if not isinstance(node.get("namespace"), (str, type(None))):
            raise errors.ProcessGraphInvalid(f"{label.capitalize()}: 'namespace' must be a "
                                             "string or null.", node_id=nid)
        if not isinstance(node.get("result", False), bool):
            raise errors.ProcessGraphInvalid(f"{label.capitalize()}: 'result' must be true or "
                                             "false.", node_id=nid)
        if not isinstance(node.get("description"), (str, type(None))):
            raise errors.ProcessGraphInvalid(f"{label.capitalize()}: 'description' must be a "
                                             "string.", node_id=nid)
        for arg_name, arg in node["arguments"].items():
            for child in graphs.iter_child_graphs(arg):
                _check_nodes(child, f"{label}, argument '{arg_name}': ")


def _check_metadata(process: dict) -> None:
    for key in _OPTIONAL_STRINGS:
        if key in process and not isinstance(process[key], str):
            raise errors.ProcessInvalid(f"'{key}' must be a string.")
    for key in _OPTIONAL_BOOLEANS:
        if key in process and not isinstance(process[key], bool):
            raise errors.ProcessInvalid(f"'{key}' must be true or false.")
    categories = process.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise errors.ProcessInvalid("'categories' must be a list of strings.")
    if "parameters" in process:
        _check_parameters(process["parameters"])
    if "returns" in process:
        returns = process["returns"]
        if not isinstance(returns, dict):
            raise errors.ProcessInvalid("'returns' must be an object with a 'schema'.")
        _check_schema(returns.get("schema"), "'returns'")
        if not isinstance(returns.get("description", ""), str):
            raise errors.ProcessInvalid("'returns.description' must be a string.")
    if not isinstance(process.get("exceptions", {}), dict):
        raise errors.ProcessInvalid("'exceptions' must be an object keyed by error code.")
    if not isinstance(process.get("examples", []), list):
        raise errors.ProcessInvalid("'examples' must be a list.")
    links = process.get("links", [])
    if not isinstance(links, list) or not all(
            isinstance(link, dict) and isinstance(link.get("href"), str)
            and isinstance(link.get("rel"), str) for link in links):
        raise errors.ProcessInvalid("'links' must be a list of objects with 'href' and 'rel'.")


def _check_parameters(parameters: Any) -> None:
    if not isinstance(parameters, list):
        raise errors.ProcessInvalid("'parameters' must be a list of parameter objects.")
    seen: set[str] = set()
    for index, param in enumerate(parameters):
        label = f"parameters[{index}]"
        if not isinstance(param, dict):
            raise errors.ProcessInvalid(f"{label} must be an object with 'name', "
                                        "'description' and 'schema'.")
        name = param.get("name")
        if not isinstance(name, str) or not PROCESS_ID_PATTERN.match(name):
            raise errors.ProcessInvalid(f"{label}: 'name' must match ^\\w+$, got {name!r}.")
        if name in seen:
            raise errors.ProcessInvalid(f"The parameter '{name}' is declared twice.")
        seen.add(name)
        label = f"parameter '{name}'"
        if not isinstance(param.get("description"), str):
            raise errors.ProcessInvalid(f"The {label} needs a 'description' (a string).")
        _check_schema(param.get("schema"), f"The {label}")
        for key in ("optional", *_OPTIONAL_BOOLEANS):
            if key in param and not isinstance(param[key], bool):
                raise errors.ProcessInvalid(f"The {label}: '{key}' must be true or false.")


def _check_schema(schema: Any, label: str) -> None:
    if isinstance(schema, dict) or (
            isinstance(schema, list) and schema and all(isinstance(s, dict) for s in schema)):
        # Imported here: jsonschema is only needed when a process is stored or validated.
        from jsonschema import Draft7Validator
        from jsonschema.exceptions import SchemaError

        for one in schema if isinstance(schema, list) else [schema]:
            try:  # openEO's own keywords (subtype, parameters) are allowed as unknown ones
                Draft7Validator.check_schema(one)
            except SchemaError as exc:
                raise errors.ProcessInvalid(
                    f"{label}: its 'schema' is no valid JSON Schema: {exc.message}.") from None
        return
    raise errors.ProcessInvalid(
        f"{label} needs a 'schema': a JSON Schema object or a non-empty list of them.")


def metadata_problems(process: Any) -> list[errors.OpenEOError]:
    """What is wrong with the metadata of a process (POST /validation): its id, parameter
    declarations and their JSON schemas, `returns` (the first problem of each part)."""
    if not isinstance(process, dict):
        return []
    problems: list[errors.OpenEOError] = []
    if "id" in process and process["id"] is not None and not is_valid_process_id(
            process["id"]):
        problems.append(errors.ProcessInvalid(
            f"The process id {process['id']!r} is invalid: use 1-{MAX_PROCESS_ID_LENGTH} "
            "letters, digits and underscores (pattern ^\\w+$)."))
    try:
        _check_metadata({k: v for k, v in process.items() if v is not None})
    except errors.OpenEOError as exc:
        problems.append(exc)
    return problems


def declared_parameters(process: dict) -> frozenset[str] | None:
    """The names of the parameters a process declares (None: it declares none at all)."""
    declared = process.get("parameters")
    if not isinstance(declared, list):
        return None
    return frozenset(p["name"] for p in declared
                     if isinstance(p, dict) and isinstance(p.get("name"), str))


# --- calls between user-defined processes ---------------------------------------------------
def called_processes(graph: dict, is_predefined: IsPredefined) -> set[str]:
    """Ids of the user-defined processes a graph (with its callbacks) calls.

    Resolved as the evaluator does: namespace "user" is always a user-defined process; no
    namespace means a user-defined one unless a predefined process has that id.
    """
    return {pid for pid, namespace in _process_refs(graph)
            if namespace == "user" or (namespace is None and not is_predefined(pid))}


def _process_refs(graph: dict) -> Iterator[tuple[str, str | None]]:
    for node in graph.values():
        if not isinstance(node, dict):
            continue
        pid = node.get("process_id")
        if isinstance(pid, str):
            yield pid, node.get("namespace")
        arguments = node.get("arguments")
        if isinstance(arguments, dict):
            for arg in arguments.values():
                for child in graphs.iter_child_graphs(arg):
                    yield from _process_refs(child)


def find_cycle(start: str, processes: Mapping[str, dict],
               is_predefined: IsPredefined) -> list[str] | None:
    """A chain of calls `[a, b, ..., a]` reachable from process `start`, or None.

    Any cycle reachable from `start` makes calling it recurse forever: openEO evaluates every
    argument (also those of `if`), so no recursion ever ends.
    """
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(pid: str) -> list[str] | None:
        if state.get(pid) == 1:
            return path[path.index(pid):] + [pid]
        if state.get(pid) == 2 or pid not in processes:
            return None
        state[pid] = 1
        path.append(pid)
        graph = processes[pid].get("process_graph")
        if isinstance(graph, dict):
            for callee in sorted(called_processes(graph, is_predefined)):
                cycle = visit(callee)
                if cycle:
                    return cycle
        path.pop()
        state[pid] = 2
        return None

    return visit(start)


def recursion_error(cycle: list[str]) -> errors.OpenEOError:
    chain = " -> ".join(cycle)
    if len(cycle) == 2:
        what = f"The user-defined process '{cycle[0]}' calls itself"
    else:
        what = f"The user-defined processes call each other in a circle ({chain})"
    return errors.ProcessGraphInvalid(
        f"{what}; recursion is not supported (openEO evaluates every argument, so it would "
        "never end). Change one of the processes so that the chain of calls ends.")
