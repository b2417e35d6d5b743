"""Checking user-defined processes before they are stored, and finding recursive calls."""

from __future__ import annotations

import pytest

from terracube import errors
from terracube.udp.definition import (
    called_processes,
    check_definition,
    find_cycle,
    is_valid_process_id,
    recursion_error,
)


def node(process_id: str, result: bool = False, **arguments) -> dict:
    out = {"process_id": process_id, "arguments": arguments}
    if result:
        out["result"] = True
    return out


def process(graph: dict, **meta) -> dict:
    return {"process_graph": graph, **meta}


PREDEFINED = {"add", "absolute", "array_apply", "array_find", "reduce_dimension", "mean"}


def is_predefined(pid: str) -> bool:
    return pid in PREDEFINED


@pytest.mark.parametrize("pid", ["ndvi", "a", "_x1", "A_B_9", "x" * 255])
def test_valid_ids(pid):
    assert is_valid_process_id(pid)


@pytest.mark.parametrize("pid", ["", "a-b", "a b", "a.b", "ä", "x" * 256, "a/b",
                                 "0f3c2b1e-9d1a-4c39-8d2a-0d1f1b3f9c11"])
def test_invalid_ids(pid):
    assert not is_valid_process_id(pid)
    with pytest.raises(errors.ProcessInvalid, match="invalid"):
        check_definition(pid, process({"n": node("absolute", True, x=1)}))


def test_id_in_body_is_replaced_and_nulls_are_dropped():
    body = process({"n": node("absolute", True, x=1)}, id="other", summary=None,
                   parameters=None, returns=None, public=False)
    stored = check_definition("mine", body)
    assert stored["id"] == "mine"
    assert "summary" not in stored and "parameters" not in stored and "returns" not in stored
    assert stored["public"] is False  # properties we do not know are kept
    assert body["id"] == "other"  # the request body itself is not changed


def test_the_official_suite_payload_is_accepted():
    # openeo-test-suite payload_examples/put_process_graphs: 'absolute' without its argument
    # is stored; whether the arguments fit is what /validation says.
    body = {"process_graph": {"absolute2": {"process_id": "absolute", "arguments": {},
                                            "result": True}},
            "parameters": [], "id": "test123"}
    assert check_definition("abc", body)["parameters"] == []


@pytest.mark.parametrize("body", [{}, {"process_graph": {}}, {"process_graph": None},
                                  {"summary": "no graph"}])
def test_missing_graph(body):
    with pytest.raises(errors.ProcessGraphMissing):
        check_definition("p", body)


@pytest.mark.parametrize("graph, message", [
    ([1, 2], "must be an object"),
    ({"n": 5}, "must be an object"),
    ({"n": {"arguments": {}, "result": True}}, "process_id"),
    ({"n": {"process_id": "a-b", "arguments": {}, "result": True}}, "process_id"),
    ({"n": {"process_id": "absolute", "result": True}}, "arguments"),
    ({"n": {"process_id": "absolute", "arguments": [], "result": True}}, "arguments"),
    ({"n": {"process_id": "absolute", "arguments": {}, "result": "yes"}}, "result"),
    ({"n": {"process_id": "absolute", "arguments": {}, "namespace": 3, "result": True}},
     "namespace"),
    ({"n": node("absolute", x=1)}, "exactly one"),
    ({"a": node("absolute", True), "b": node("absolute", True)}, "exactly one"),
    ({"n": node("absolute", True, x={"from_node": "nope"})}, "nope"),
    ({"a": node("absolute", True, x={"from_node": "b"}),
      "b": node("absolute", x={"from_node": "a"})}, "cycle"),
    # a callback with a broken node
    ({"n": node("array_apply", True, data=[1], process={"process_graph": {
        "x": {"process_id": "absolute", "result": True}}})}, "arguments"),
])
def test_invalid_graphs(graph, message):
    with pytest.raises(errors.ProcessGraphInvalid, match=message):
        check_definition("p", process(graph))


GOOD = {"n": node("absolute", True, x={"from_parameter": "x"})}


@pytest.mark.parametrize("meta, message", [
    ({"summary": 5}, "summary"),
    ({"description": ["x"]}, "description"),
    ({"parameters": {"x": {}}}, "parameters"),
    ({"parameters": ["x"]}, "parameters\\[0\\]"),
    ({"parameters": [{"description": "d", "schema": {}}]}, "name"),
    ({"parameters": [{"name": "a-b", "description": "d", "schema": {}}]}, "name"),
    ({"parameters": [{"name": "x", "schema": {}}]}, "description"),
    ({"parameters": [{"name": "x", "description": "d"}]}, "schema"),
    ({"parameters": [{"name": "x", "description": "d", "schema": []}]}, "schema"),
    ({"parameters": [{"name": "x", "description": "d", "schema": {}, "optional": "no"}]},
     "optional"),
    ({"parameters": [{"name": "x", "description": "d", "schema": {}},
                     {"name": "x", "description": "d", "schema": {}}]}, "twice"),
    ({"returns": "number"}, "returns"),
    ({"returns": {"description": "no schema"}}, "schema"),
    ({"categories": "math"}, "categories"),
    ({"deprecated": "yes"}, "deprecated"),
    ({"links": [{"href": "https://example.org"}]}, "links"),
    ({"exceptions": []}, "exceptions"),
])
def test_invalid_metadata(meta, message):
    with pytest.raises(errors.ProcessInvalid, match=message):
        check_definition("p", process(GOOD, **meta))


def test_complete_metadata_is_kept():
    meta = {"summary": "s", "description": "d", "categories": ["math"],
            "parameters": [{"name": "x", "description": "a number",
                            "schema": [{"type": "number"}, {"type": "null"}],
                            "optional": True, "default": 1}],
            "returns": {"description": "r", "schema": {"type": "number"}},
            "exceptions": {"Bad": {"message": "bad"}}, "examples": [{"arguments": {"x": 1}}],
            "links": [{"href": "https://example.org", "rel": "about"}],
            "experimental": True}
    stored = check_definition("p", process(GOOD, **meta))
    assert stored == {"process_graph": GOOD, **meta, "id": "p"}


def test_called_processes_follow_the_evaluator():
    graph = {
        "a": node("add", x=1, y=2),
        "b": node("my_udp", x={"from_node": "a"}),
        "c": {"process_id": "add", "namespace": "user", "arguments": {}},  # user's own 'add'
        "d": {"process_id": "other", "namespace": "backend", "arguments": {}},
        "e": node("array_apply", True, data=[1], process={"process_graph": {
            "i": node("inner_udp", True, x={"from_parameter": "x"})}}),
    }
    assert called_processes(graph, is_predefined) == {"my_udp", "add", "inner_udp"}


def udp(*calls: str) -> dict:
    graph = {f"n{i}": node(pid) for i, pid in enumerate(calls)}
    graph["r"] = node("absolute", True, x=1)
    return process(graph)


def test_find_cycle():
    procs = {"a": udp("b", "add"), "b": udp("c"), "c": udp(), "self": udp("self"),
             "x": udp("y"), "y": udp("z"), "z": udp("x"), "top": udp("a", "y")}
    assert find_cycle("a", procs, is_predefined) is None
    assert find_cycle("c", procs, is_predefined) is None
    assert find_cycle("missing", procs, is_predefined) is None
    assert find_cycle("self", procs, is_predefined) == ["self", "self"]
    assert find_cycle("x", procs, is_predefined) == ["x", "y", "z", "x"]
    # a cycle further down the calls is found as well
    assert find_cycle("top", procs, is_predefined) == ["y", "z", "x", "y"]


def test_diamond_calls_are_not_a_cycle():
    procs = {"top": udp("l", "r"), "l": udp("leaf"), "r": udp("leaf"), "leaf": udp()}
    assert find_cycle("top", procs, is_predefined) is None


def test_recursion_error_messages():
    self_call = recursion_error(["f", "f"])
    assert isinstance(self_call, errors.ProcessGraphInvalid)
    assert self_call.status == 400
    assert "'f' calls itself" in self_call.message
    assert "a -> b -> a" in recursion_error(["a", "b", "a"]).message
