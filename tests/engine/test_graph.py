"""Static structure checks of process graphs (engine/graph.py): references and cycles."""

from __future__ import annotations

import pytest

from terracube import errors
from terracube.engine import graph as graphs
from terracube.engine.evaluate import Evaluator, Services


def node(process_id: str, result: bool = False, **arguments) -> dict:
    flag = {"result": True} if result else {}
    return {"process_id": process_id, "arguments": arguments, **flag}


def test_from_argument_naming_a_node_is_a_node_reference():
    graph = {"a": node("add", x=1, y=2), "b": node("add", True, x={"from_argument": "a"}, y=1)}
    refs = list(graphs.iter_references(graph["b"]["arguments"], graph))
    assert refs == [("from_node", "a")]
    # Without a node of that name it is a parameter (as the evaluator resolves it).
    assert list(graphs.iter_references({"x": {"from_argument": "x"}}, graph)) == [
        ("from_parameter", "x")]
    assert list(graphs.iter_references({"x": {"from_argument": ["a"]}}, graph)) == [
        ("from_parameter", ["a"])]


@pytest.mark.parametrize("graph", [
    {"a": node("add", x={"from_argument": "b"}, y=1),
     "b": node("add", True, x={"from_node": "a"}, y=1)},
    {"a": node("add", True, x={"from_argument": "a"}, y=1)},
    {"a": node("add", x={"from_argument": "c"}, y=1),
     "b": node("add", x=[{"from_node": "a"}], y=1),
     "c": node("add", True, x={"from_argument": "b"}, y=1)},
], ids=["two-nodes", "self", "three-nodes-in-a-list"])
def test_cycles_through_from_argument_are_rejected(graph, registry):
    with pytest.raises(errors.OpenEOError) as info:
        graphs.validate_structure(graph)
    assert info.value.code == "ProcessGraphInvalid"
    assert "cycle" in info.value.message
    # The evaluator refuses it the same way instead of recursing until RecursionError.
    with pytest.raises(errors.OpenEOError) as info:
        Evaluator(Services(registry=registry)).run(graph)
    assert info.value.code == "ProcessGraphInvalid"


def test_from_argument_to_a_node_still_evaluates(registry):
    graph = {"a": node("add", x=1, y=2), "b": node("multiply", True, x={"from_argument": "a"},
                                                   y=10)}
    assert Evaluator(Services(registry=registry)).run(graph) == 30
