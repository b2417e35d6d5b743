"""Checks every JSON request body passes before a route sees it: standard JSON only (no NaN or
Infinity, no lone UTF-16 surrogates), bounded nesting depth, node count and node chain length.

The walks here are iterative on purpose: the point is to refuse input that would make the
recursive code behind the door (graph validation, evaluation, storage) exceed Python's stack.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from terracube import errors


@dataclass(frozen=True)
class InputLimits:
    """The limits of request bodies (from Settings; see docs/administration/security.md)."""

    max_depth: int = 100
    max_nodes: int = 5000
    max_chain: int = 300


def _refuse_constant(name: str) -> float:
    raise errors.BadRequest(
        f"The request body contains the number '{name}', which is not JSON (RFC 8259); "
        "send null for no-data, or compute the value with a process (e.g. divide 0 by 0).")


def parse_json(raw: bytes) -> Any:
    """The JSON value of a request body; 400 BadRequest for anything but standard JSON."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise errors.BadRequest(f"The request body is not valid JSON: {exc}.") from None
    except RecursionError:
        raise errors.BadRequest("The request body is nested too deeply to be read.") from None


def check_body(body: Any, limits: InputLimits) -> None:
    """Raise a 400 BadRequest if `body` is nested too deeply, holds text that cannot be
    stored (a lone surrogate), or holds process graphs that are too big or chained too long."""
    nodes = 0
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if depth > limits.max_depth:
                raise _too_deep(limits)
            graph = value.get("process_graph")
            if isinstance(graph, dict):
                nodes += len(graph)
                if nodes > limits.max_nodes:
                    raise errors.BadRequest(
                        f"The request holds more than {limits.max_nodes} process graph nodes "
                        "(setting TERRACUBE_MAX_GRAPH_NODES).")
                _check_chain(graph, limits)
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > limits.max_depth:
                raise _too_deep(limits)
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _too_deep(limits: InputLimits) -> errors.OpenEOError:
    return errors.BadRequest(
        f"The request body is nested more than {limits.max_depth} levels deep "
        "(setting TERRACUBE_MAX_JSON_DEPTH).")


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise errors.BadRequest(
            "The request body contains a lone UTF-16 surrogate (e.g. \\ud800), which is not "
            f"Unicode text: {text.encode('utf-8', 'backslashreplace').decode()[:80]!r}."
        ) from None


def _check_chain(graph: dict, limits: InputLimits) -> None:
    """Refuse a graph whose longest from_node chain is longer than the limit (evaluation and
    validation follow chains recursively). Cycles are left to the graph validation."""
    deps: dict[str, list[str]] = {}
    for nid, node in graph.items():
        refs: list[str] = []
        args = node.get("arguments") if isinstance(node, dict) else None
        stack: list[Any] = [args]
        while stack:
            value = stack.pop()
            if isinstance(value, dict):
                ref = value.get("from_node")
                if len(value) == 1 and isinstance(ref, str):
                    refs.append(ref)
                elif "process_graph" not in value:
                    stack.extend(value.values())
            elif isinstance(value, list):
                stack.extend(value)
        deps[nid] = [r for r in refs if r in graph]
    length: dict[str, int] = {}
    for start in graph:
        if start in length:
            continue
        todo: list[tuple[str, bool]] = [(start, False)]
        on_path: set[str] = set()
        while todo:
            nid, done = todo.pop()
            if done:
                on_path.discard(nid)
                length[nid] = 1 + max((length.get(d, 0) for d in deps[nid]), default=0)
                if length[nid] > limits.max_chain:
                    raise errors.ProcessGraphInvalid(
                        f"The process graph has a chain of more than {limits.max_chain} nodes "
                        f"ending at node '{nid}' (setting TERRACUBE_MAX_GRAPH_CHAIN); split it "
                        "into user-defined processes or batch jobs.", node_id=nid)
                continue
            if nid in length or nid in on_path:
                continue  # done already, or a cycle (reported by the graph validation)
            on_path.add(nid)
            todo.append((nid, True))
            todo.extend((d, False) for d in deps[nid] if d not in length and d not in on_path)
