"""Issue 16 ("validation missed 384 of 422 wrong-type arguments") and issue 18 (494-497):
POST /validation reports wrong-type arguments, checked against every process's JSON schema,
and accepts the arguments of the official process tests; what it accepts does not fail with a
wrong-type error at /result, and what it refuses /result refuses too. Through a real server.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.paths import SHARED

from terracube.engine.argument_types import matches
from terracube.engine.registry import build_registry
from terracube.engine.specs import process_description

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CASES = SHARED / "openeo-processes" / "tests"
# Candidate wrong values: for each parameter, the first one its schema does not allow.
WRONG = ["not a number", 1.5, True, [1, 2], {"a": 1}, None]
_COMMENTS = re.compile(r'("(?:[^"\\]|\\.)*")|//[^\n]*|/\*.*?\*/', re.S)
_TRAILING = re.compile(r'("(?:[^"\\]|\\.)*")|,(?=\s*[\]}])')


def _wrong_arguments() -> list[tuple[str, str, Any]]:
    """(process, parameter, wrong value) for every parameter of every process we offer whose
    schema refuses one of WRONG."""
    found = []
    for pid in build_registry().ids():
        description = process_description(pid)
        for param in (description or {}).get("parameters", []):
            schema = param.get("schema")
            if isinstance(schema, dict) and "subtype" in schema and \
                    schema["subtype"] == "process-graph":
                continue
            bad = next((v for v in WRONG if not matches(v, schema)), "absent")
            if bad != "absent":
                found.append((pid, param["name"], bad))
    return found


def _load(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    plain = _TRAILING.sub(lambda m: m[1] or "", _COMMENTS.sub(lambda m: m[1] or "", text))
    return json.loads(plain)


def _plain(value: Any) -> bool:
    """JSON without $refs, NaN or infinities (what a request body can hold as is)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return "$ref" not in value and "type" not in value and all(
            _plain(v) for v in value.values())
    if isinstance(value, list):
        return all(_plain(v) for v in value)
    return True


def _official_cases(per_process: int = 3) -> list[tuple[str, dict]]:
    registry = build_registry()
    out = []
    for path in sorted(CASES.glob("*.json5")):
        doc = _load(path)
        pid = doc.get("id")
        if pid not in registry:
            continue
        taken = 0
        for case in doc.get("tests", []):
            args = case.get("arguments", {})
            if "throws" in case or not _plain(args) or taken >= per_process:
                continue
            out.append((pid, args))
            taken += 1
    return out


def _graph(pid: str, arguments: dict) -> dict:
    return {"process": {"process_graph": {"n": {"process_id": pid, "arguments": arguments,
                                                "result": True}}}}


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.api, timeout=120) as client:
        token = client.get("credentials/basic", auth=("demo", "demo")).json()["access_token"]
        client.headers["Authorization"] = f"Bearer basic//{token}"
        yield client


def test_wrong_types_are_reported_for_every_process(http) -> None:
    cases = _wrong_arguments()
    assert len(cases) > 350  # every typed parameter of every process (387 today)
    missed = []
    for pid, name, bad in cases:
        r = http.post("validation", json=_graph(pid, {name: bad}))
        assert r.status_code == 200, r.text
        found = [e for e in r.json()["errors"] if e["code"] == "ProcessParameterInvalid"
                 and f"argument '{name}'" in e["message"]]
        if not found:
            missed.append((pid, name, bad))
    assert not missed, f"{len(missed)} of {len(cases)} missed: {missed[:20]}"


def test_refused_by_validation_is_refused_by_result(http) -> None:
    """A sample of the wrong-type arguments of scalar processes (no data needed)."""
    scalar = [c for c in _wrong_arguments()
              if c[0] in {"add", "absolute", "sqrt", "text_concat", "array_element",
                          "between", "clip", "eq", "linear_scale_range", "round", "and",
                          "date_shift", "array_create", "count", "sort", "mean"}]
    assert len(scalar) >= 10
    for pid, name, bad in scalar:
        r = http.post("result", json=_graph(pid, {name: bad}))
        assert 400 <= r.status_code < 500, (pid, name, bad, r.status_code, r.text)


def test_official_arguments_are_accepted_and_run(http) -> None:
    """No false alarm: the arguments of the official tests pass /validation, and none of
    them fails with a wrong-type error at /result."""
    cases = _official_cases()
    assert len(cases) > 150
    false_alarms = []
    for pid, args in cases:
        r = http.post("validation", json=_graph(pid, args))
        wrong = [e["message"] for e in r.json()["errors"]
                 if e["code"] == "ProcessParameterInvalid"]
        if wrong:
            false_alarms.append((pid, args, wrong))
    assert not false_alarms, false_alarms[:10]
    for pid, args in cases[::7]:  # a sample run for real
        r = http.post("result", json=_graph(pid, args))
        if r.status_code >= 400:
            assert "is invalid: it is" not in r.json().get("message", ""), (pid, args, r.text)


def test_unknown_callback_parameter_is_reported(http) -> None:
    graph = {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": None, "temporal_extent": None}},
        "r": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "load"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "mean", "arguments": {"data": {"from_parameter": "x"}},
                      "result": True}}}}, "result": True}}}
    errors = http.post("validation", json=graph).json()["errors"]
    assert [e["code"] for e in errors] == ["ProcessParameterRequired"]
    assert "'x'" in errors[0]["message"] and "data" in errors[0]["message"]


def test_process_metadata_is_validated(http) -> None:
    """Requirements 494-496: an invalid id, parameter declarations and return schemas."""
    good = {"a": {"process_id": "add", "arguments": {"x": 1, "y": 2}, "result": True}}
    for extra in ({"id": "not a valid id!"},
                  {"parameters": [{"name": "not valid!", "schema": 7}]},
                  {"parameters": [{"name": "p", "description": "p", "schema": {"type": "nope"}}]},
                  {"returns": {"description": 5, "schema": "not-a-schema"}}):
        errors = http.post("validation", json={"process_graph": good, **extra}).json()["errors"]
        assert [e["code"] for e in errors] == ["ProcessInvalid"], (extra, errors)
    assert http.post("validation", json={"process_graph": good}).json()["errors"] == []


def test_store_refuses_wrong_types_and_undeclared_parameters(http) -> None:
    declared = [{"name": "v", "description": "a number", "schema": {"type": "number"}}]
    wrong = {"parameters": declared, "process_graph": {"a": {
        "process_id": "add", "arguments": {"x": "one", "y": {"from_parameter": "v"}},
        "result": True}}}
    r = http.put("process_graphs/wrong_type", json=wrong)
    assert r.status_code == 400 and r.json()["code"] == "ProcessParameterInvalid", r.text
    undeclared = {"parameters": declared, "process_graph": {"a": {
        "process_id": "add", "arguments": {"x": 1, "y": {"from_parameter": "w"}},
        "result": True}}}
    r = http.put("process_graphs/undeclared", json=undeclared)
    assert r.status_code == 400 and "'w'" in r.json()["message"], r.text
    good = {"parameters": declared, "process_graph": {"a": {
        "process_id": "add", "arguments": {"x": 1, "y": {"from_parameter": "v"}},
        "result": True}}}
    assert http.put("process_graphs/good_one", json=good).status_code == 200
    assert http.delete("process_graphs/good_one").status_code == 204


_SMALL_LOAD = {"process_id": "load_collection", "arguments": {
    "id": "SENTINEL2_L2A", "temporal_extent": ["2022-06-01", "2022-06-10"], "bands": ["B04"],
    "spatial_extent": {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500,
                       "crs": 32632}}}
_MEAN = {"process_graph": {"m": {"process_id": "mean", "arguments": {
    "data": {"from_parameter": "data"}}, "result": True}}}


@pytest.mark.parametrize("name, graph", [
    ("a cube where a number must be", {
        "load": _SMALL_LOAD,
        "a": {"process_id": "add", "arguments": {"x": {"from_node": "load"}, "y": 1},
              "result": True}}),
    ("a number where a cube must be", {
        "n": {"process_id": "add", "arguments": {"x": 1, "y": 2}},
        "a": {"process_id": "ndvi", "arguments": {"data": {"from_node": "n"}},
              "result": True}}),
    ("a string where a cube must be", {
        "n": {"process_id": "text_concat", "arguments": {"data": ["a", "b"]}},
        "a": {"process_id": "reduce_dimension", "arguments": {
            "data": {"from_node": "n"}, "dimension": "t", "reducer": _MEAN},
            "result": True}}),
])
def test_wrong_reference_types_are_reported(http, name, graph) -> None:
    """from_node results whose kind is certain from the process descriptions are checked
    against the parameter's schema; /result refuses the same graphs."""
    errors = http.post("validation", json={"process_graph": graph}).json()["errors"]
    assert [(e["code"], e["message"].split("]")[0]) for e in errors] == [
        ("ProcessParameterInvalid", f"[node 'a', argument '{next(iter(graph['a']['arguments']))}'")
    ], (name, errors)
    assert "that node 'n" in errors[0]["message"] or "that node 'load'" in errors[0]["message"]
    r = http.post("result", json={"process": {"process_graph": graph}})
    assert r.status_code == 400 and r.json()["code"] == "ProcessParameterInvalid", r.text


def test_right_reference_types_are_accepted(http) -> None:
    """No false alarm for references: cubes through cube processes, a number saved as JSON
    (save_result takes more than its schema says), a callback's parameter, a process whose
    result can be anything."""
    graphs = [
        {"load": _SMALL_LOAD,
         "r": {"process_id": "reduce_dimension", "arguments": {
             "data": {"from_node": "load"}, "dimension": "t", "reducer": _MEAN}},
         "s": {"process_id": "save_result", "arguments": {
             "data": {"from_node": "r"}, "format": "GTiff"}, "result": True}},
        {"n": {"process_id": "add", "arguments": {"x": 1, "y": 2}},
         "s": {"process_id": "save_result", "arguments": {
             "data": {"from_node": "n"}, "format": "JSON"}, "result": True}},
        {"n": {"process_id": "add", "arguments": {"x": 1, "y": 2}},
         "m": {"process_id": "multiply", "arguments": {"x": {"from_node": "n"}, "y": 3},
               "result": True}},
        {"load": _SMALL_LOAD,
         "a": {"process_id": "apply", "arguments": {"data": {"from_node": "load"},
                                                    "process": {"process_graph": {
             "x": {"process_id": "add", "arguments": {"x": {"from_parameter": "x"}, "y": 1},
                   "result": True}}}}, "result": True}},
        {"load": _SMALL_LOAD,
         "i": {"process_id": "inspect", "arguments": {"data": {"from_node": "load"}}},
         "r": {"process_id": "reduce_dimension", "arguments": {
             "data": {"from_node": "i"}, "dimension": "t", "reducer": _MEAN},
             "result": True}},
    ]
    for graph in graphs:
        assert http.post("validation", json={"process_graph": graph}).json()["errors"] == [], \
            graph
        r = http.post("result", json={"process": {"process_graph": graph}})
        assert r.status_code == 200, (graph, r.text)


def test_geojson_is_accepted_where_a_vector_cube_is() -> None:
    """The community RandomForest and DynamicLandCoverMapping examples pass GeoJSON as the
    `target` of fit_class_random_forest (a vector-cube): CDSE and our engine take it, so
    /validation (the client's preflight) does not call it wrong; other objects still are."""
    schema = {"type": "object", "subtype": "vector-cube"}
    collection = {"type": "FeatureCollection", "features": []}
    assert matches(collection, schema)
    assert matches({"type": "Point", "coordinates": [1, 2]}, schema)
    assert not matches({"a": 1}, schema)
    assert not matches({"type": "Point"}, {"type": "object", "subtype": "raster-cube"})
