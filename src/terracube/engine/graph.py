"""Process graph structure: parsing and static validation (result node, references, cycles)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from terracube import errors


def unwrap(payload: Any) -> dict:
    """The `process_graph` object of a request body, a process object or a bare graph."""
    if not isinstance(payload, dict) or not payload:
        raise errors.ProcessGraphMissing("The request body has no process graph.")
    if "process" in payload and isinstance(payload["process"], dict):
        payload = payload["process"]
    if "process_graph" in payload:
        graph = payload["process_graph"]
        if not isinstance(graph, dict) or not graph:
            raise errors.ProcessGraphMissing("'process_graph' is missing or empty.")
        return graph
    if all(isinstance(v, dict) and "process_id" in v for v in payload.values()):
        return payload
    raise errors.ProcessGraphMissing("The request body has no 'process' with a 'process_graph'.")


def result_node(graph: dict) -> str:
    results = [nid for nid, node in graph.items() if isinstance(node, dict) and node.get("result")]
    if len(results) != 1:
        raise errors.ProcessGraphInvalid(
            f"A process graph needs exactly one node with \"result\": true, found {len(results)}"
            + (f" ({', '.join(results)})" if results else "") + "."
        )
    return results[0]


def iter_references(value: Any, nodes: Any = ()) -> Iterator[tuple[str, str]]:
    """(kind, name) of every from_node / from_parameter in an argument (not in child graphs).

    `from_argument` (not in the API, but used by official test cases) is resolved as the
    evaluator resolves it: a node reference if `nodes` (the graph, or its node ids) has a node
    of that name, else a parameter reference. So the cycle check sees those edges too.
    """
    if isinstance(value, dict):
        if "from_node" in value and len(value) == 1:
            yield "from_node", value["from_node"]
        elif "from_parameter" in value and len(value) == 1:
            yield "from_parameter", value["from_parameter"]
        elif "from_argument" in value and len(value) == 1:
            ref = value["from_argument"]
            yield ("from_node" if _names_node(ref, nodes) else "from_parameter"), ref
        elif "process_graph" in value and isinstance(value["process_graph"], dict):
            return
        else:
            for v in value.values():
                yield from iter_references(v, nodes)
    elif isinstance(value, list):
        for v in value:
            yield from iter_references(v, nodes)


def end_nodes(graph: dict) -> list[str]:
    """Ids of the nodes no other node of `graph` uses (in graph order), e.g. the save_result
    nodes of the client's MultiResult, of which only one is the result node."""
    used = {ref for node in graph.values()
            for arg in (node.get("arguments") or {}).values()
            for kind, ref in iter_references(arg, graph) if kind == "from_node"}
    return [nid for nid in graph if nid not in used]


def _names_node(ref: Any, nodes: Any) -> bool:
    try:
        return ref in nodes
    except TypeError:  # an unhashable reference (e.g. a list) names no node
        return False


def iter_child_graphs(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        if "process_graph" in value and isinstance(value["process_graph"], dict):
            yield value["process_graph"]
            return
        for v in value.values():
            yield from iter_child_graphs(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_child_graphs(v)


def validate_structure(graph: dict) -> str:
    """Check nodes, references and acyclicity of a graph and its children; return the result
    node."""
    if not isinstance(graph, dict) or not graph:
        raise errors.ProcessGraphMissing("The process graph is empty.")
    for nid, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("process_id"), str):
            raise errors.ProcessGraphInvalid(f"Node '{nid}' has no 'process_id'.", node_id=nid)
        args = node.get("arguments", {})
        if not isinstance(args, dict):
            raise errors.ProcessGraphInvalid(f"Node '{nid}': 'arguments' must be an object.",
                                             node_id=nid)
        for arg_name, arg in args.items():
            for kind, ref in iter_references(arg, graph):
                if kind == "from_node" and (not isinstance(ref, str) or ref not in graph):
                    raise errors.ProcessGraphInvalid(
                        f"Node '{nid}' refers with from_node to '{ref}', which is not a node of "
                        "the process graph.", node_id=nid, argument=arg_name)
            for child in iter_child_graphs(arg):
                try:
                    validate_structure(child)
                except errors.OpenEOError as exc:
                    exc.at(nid, arg_name)
                    raise
    root = result_node(graph)
    _check_acyclic(graph)
    return root


def _check_acyclic(graph: dict) -> None:
    deps = {
        nid: {ref for arg in node.get("arguments", {}).values()
              for kind, ref in iter_references(arg, graph) if kind == "from_node"}
        for nid, node in graph.items()
    }
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(nid: str, path: list[str]) -> None:
        if state.get(nid) == 2:
            return
        if state.get(nid) == 1:
            cycle = path[path.index(nid):] + [nid]
            raise errors.ProcessGraphInvalid(
                "The process graph has a cycle: " + " -> ".join(cycle) + ".", node_id=nid)
        state[nid] = 1
        for dep in sorted(deps[nid]):
            visit(dep, path + [nid])
        state[nid] = 2

    for nid in graph:
        visit(nid, [])


def process_ids(graph: dict) -> set[str]:
    """Every process id used in the graph and its child graphs."""
    found = set()
    for node in graph.values():
        found.add(node["process_id"])
        for arg in node.get("arguments", {}).values():
            for child in iter_child_graphs(arg):
                found |= process_ids(child)
    return found
