"""GET/PUT/DELETE /process_graphs(/{id}) with two users, and stored processes in /result and
/validation, through the real app, database and process registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.settings import Settings
from terracube.udp.store import UserDefinedProcess

API = "/openeo/1.2"


@pytest.fixture
def client(tmp_path, registry) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path / "data"), catalog=EmptyCatalog(),
                     registry=registry)
    app.state.users.add("alice", "wonderland")
    app.state.users.add("bob", "builder")
    return TestClient(app)




def param(name: str, **extra) -> dict:
    return {"name": name, "description": f"the {name}", "schema": {}, **extra}


SCALE = {
    "summary": "x times a factor",
    "description": "Multiplies `x` by `factor` (10 unless given).",
    "parameters": [param("x", schema={"type": "number"}),
                   param("factor", schema={"type": "number"}, optional=True, default=10)],
    "returns": {"description": "the product", "schema": {"type": "number"}},
    "examples": [{"arguments": {"x": 2}, "returns": 20}],
    "process_graph": {"m": {"process_id": "multiply", "arguments": {
        "x": {"from_parameter": "x"}, "y": {"from_parameter": "factor"}}, "result": True}},
}


def call(process_id: str, **arguments) -> dict:
    return {"process_graph": {"c": {"process_id": process_id, "arguments": arguments,
                                    "result": True}}}


def put(client, headers, pid: str, body: dict):
    return client.put(f"{API}/process_graphs/{pid}", json=body, headers=headers)


def test_store_describe_list_delete(client, alice):
    r = put(client, alice, "scale", {**SCALE, "id": "something_else"})
    assert r.status_code == 200, r.text
    assert r.content == b""
    r = client.get(f"{API}/process_graphs/scale", headers=alice)
    assert r.status_code == 200
    assert r.json() == {**SCALE, "id": "scale"}  # the path wins over the body's id
    r = client.get(f"{API}/process_graphs", headers=alice)
    assert r.status_code == 200
    body = r.json()
    assert body["links"] == []
    (listed,) = body["processes"]
    assert listed == {key: value for key, value in {**SCALE, "id": "scale"}.items()
                      if key not in ("process_graph", "examples")}
    r = client.delete(f"{API}/process_graphs/scale", headers=alice)
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"{API}/process_graphs", headers=alice).json()["processes"] == []
    for method in ("GET", "DELETE"):
        r = client.request(method, f"{API}/process_graphs/scale", headers=alice)
        assert r.status_code == 404
        assert r.json()["code"] == "ProcessGraphNotFound"


def test_put_replaces_fully(client, alice):
    put(client, alice, "scale", SCALE)
    minimal = {"process_graph": SCALE["process_graph"], "parameters": SCALE["parameters"]}
    assert put(client, alice, "scale", minimal).status_code == 200
    assert client.get(f"{API}/process_graphs/scale", headers=alice).json() == {
        **minimal, "id": "scale"}


def test_authentication_is_required(client):
    for method, path in (("GET", "/process_graphs"), ("GET", "/process_graphs/x"),
                         ("PUT", "/process_graphs/x"), ("DELETE", "/process_graphs/x")):
        r = client.request(method, API + path, json=SCALE if method == "PUT" else None)
        assert r.status_code == 401, (method, path)
        assert r.json()["code"] == "AuthenticationRequired"


@pytest.mark.parametrize("pid, body, status, code", [
    ("ndvi", SCALE, 400, "PredefinedProcessExists"),
    ("multiply", SCALE, 400, "PredefinedProcessExists"),
    ("has-dash", SCALE, 400, "ProcessInvalid"),
    ("0f3c2b1e-9d1a-4c39-8d2a-0d1f1b3f9c11", SCALE, 400, "ProcessInvalid"),
    ("p", {}, 400, "ProcessGraphMissing"),
    ("p", {"summary": "no graph"}, 400, "ProcessGraphMissing"),
    ("p", {"process_graph": {"a": {"process_id": "add", "arguments": {}}}}, 400,
     "ProcessGraphInvalid"),
    ("p", {"process_graph": {"a": {"process_id": "add", "arguments": {
        "x": {"from_node": "zzz"}}, "result": True}}}, 400, "ProcessGraphInvalid"),
    ("p", {**SCALE, "parameters": [{"name": "x"}]}, 400, "ProcessInvalid"),
    ("me", call("me"), 400, "ProcessGraphInvalid"),
])
def test_put_errors(client, alice, pid, body, status, code):
    r = put(client, alice, pid, body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert client.get(f"{API}/process_graphs", headers=alice).json()["processes"] == []


def test_put_without_a_json_object_body(client, alice):
    for content in (b"", b"not json", b"[1, 2]"):
        r = client.put(f"{API}/process_graphs/p", content=content,
                       headers={**alice, "Content-Type": "application/json"})
        assert r.status_code == 400, content
        assert r.json()["code"] == "BadRequest"


def test_invalid_ids_are_not_found(client, alice):
    for pid in ("has-dash", "ümlaut", "x" * 300):
        r = client.get(f"{API}/process_graphs/{pid}", headers=alice)
        assert r.status_code == 404 and r.json()["code"] == "ProcessGraphNotFound"
        r = client.delete(f"{API}/process_graphs/{pid}", headers=alice)
        assert r.status_code == 404 and r.json()["code"] == "ProcessGraphNotFound"


def test_the_official_suite_payload(client, alice):
    # openeo-test-suite payload_examples/put_process_graphs/put_process_graphs_1.json
    body = {"process_graph": {"absolute2": {"process_id": "absolute", "arguments": {},
                                            "result": True}},
            "parameters": [], "id": "test123"}
    assert put(client, alice, "d3b07384d113edec49eaa6238ad5ff00", body).status_code == 200
    got = client.get(f"{API}/process_graphs/d3b07384d113edec49eaa6238ad5ff00",
                     headers=alice).json()
    assert got["id"] == "d3b07384d113edec49eaa6238ad5ff00" and got["parameters"] == []


def test_users_are_isolated(client, alice, bob):
    put(client, alice, "scale", SCALE)
    # bob cannot list, read, delete or call alice's process
    assert client.get(f"{API}/process_graphs", headers=bob).json()["processes"] == []
    assert client.get(f"{API}/process_graphs/scale", headers=bob).status_code == 404
    assert client.delete(f"{API}/process_graphs/scale", headers=bob).status_code == 404
    r = client.post(f"{API}/result", json={"process": call("scale", x=1)}, headers=bob)
    assert r.status_code == 400 and r.json()["code"] == "ProcessUnsupported"
    # bob's own 'scale' does not change alice's
    bobs = {**SCALE, "summary": "bob's", "parameters": [param("x"), param("factor",
                                                                         default=-1)]}
    assert put(client, bob, "scale", bobs).status_code == 200
    assert client.get(f"{API}/process_graphs/scale", headers=alice).json()["summary"] == \
        SCALE["summary"]
    r = client.post(f"{API}/result", json={"process": call("scale", x=3)}, headers=bob)
    assert r.json() == -3
    r = client.post(f"{API}/result", json={"process": call("scale", x=3)}, headers=alice)
    assert r.json() == 30
    client.delete(f"{API}/process_graphs/scale", headers=bob)
    assert client.get(f"{API}/process_graphs/scale", headers=alice).status_code == 200


def test_stored_process_in_result_with_default_and_nesting(client, alice):
    put(client, alice, "scale", SCALE)
    put(client, alice, "scale_twice", {
        "parameters": [param("value")],
        "process_graph": {
            "a": {"process_id": "scale", "arguments": {"x": {"from_parameter": "value"}}},
            "b": {"process_id": "scale", "arguments": {"x": {"from_node": "a"}, "factor": 2},
                  "result": True}}})
    r = client.post(f"{API}/result", json={"process": call("scale", x=4)}, headers=alice)
    assert r.status_code == 200 and r.json() == 40
    r = client.post(f"{API}/result", json={"process": call("scale", x=4, factor=3)},
                    headers=alice)
    assert r.json() == 12
    r = client.post(f"{API}/result", json={"process": call("scale_twice", value=1)},
                    headers=alice)
    assert r.json() == 20


def test_array_find_all_community_process(client, alice):
    find_all = {
        "parameters": [param("data"), param("values"),
                       param("reverse", optional=True, default=False)],
        "process_graph": {"apply": {"process_id": "array_apply", "arguments": {
            "data": {"from_parameter": "values"},
            "process": {"process_graph": {"find": {"process_id": "array_find", "arguments": {
                "data": {"from_parameter": "data"}, "value": {"from_parameter": "x"},
                "reverse": {"from_parameter": "reverse"}}, "result": True}}}},
            "result": True}}}
    assert put(client, alice, "array_find_all", find_all).status_code == 200
    body = {"process": call("array_find_all", data=["a", "b", "c", "b"],
                            values=["b", "c", "z"])}
    assert client.post(f"{API}/result", json=body, headers=alice).json() == [1, 2, None]
    body["process"]["process_graph"]["c"]["arguments"]["reverse"] = True
    assert client.post(f"{API}/result", json=body, headers=alice).json() == [3, 2, None]


def test_validation_checks_stored_processes(client, alice, bob):
    put(client, alice, "scale", SCALE)

    def problems(headers, process):
        r = client.post(f"{API}/validation", json=process, headers=headers)
        assert r.status_code == 200
        return [e["code"] for e in r.json()["errors"]]

    assert problems(alice, call("scale", x=1)) == []
    assert problems(alice, call("no_such_process", x=1)) == ["ProcessUnsupported"]
    assert problems(bob, call("scale", x=1)) == ["ProcessUnsupported"]
    assert problems({}, call("scale", x=1)) == ["ProcessUnsupported"]  # anonymous


def test_recursion_stored_behind_our_back(client, alice):
    # e.g. two concurrent PUTs that each closed half of a circle: refused when called
    now = datetime.now(UTC)
    with client.app.state.db.session() as s:
        for pid, callee in (("ping", "pong"), ("pong", "ping")):
            s.add(UserDefinedProcess(user_id="alice", process_id=pid, created=now,
                                     updated=now, definition={"id": pid, **call(callee)}))
    r = client.post(f"{API}/result", json={"process": call("ping")}, headers=alice)
    assert r.status_code == 400
    assert r.json()["code"] == "ProcessGraphInvalid"
    assert "ping -> pong -> ping" in r.json()["message"]
    r = client.post(f"{API}/validation", json=call("ping"), headers=alice)
    assert [e["code"] for e in r.json()["errors"]] == ["ProcessGraphInvalid"]


def test_list_pagination(client, alice):
    for pid in ("a1", "a2", "a3", "a4", "a5"):
        put(client, alice, pid, SCALE)
    r = client.get(f"{API}/process_graphs?limit=2", headers=alice)
    body = r.json()
    assert [p["id"] for p in body["processes"]] == ["a1", "a2"]
    (nxt,) = [link for link in body["links"] if link["rel"] == "next"]
    seen = ["a1", "a2"]
    while nxt:
        page = client.get(nxt["href"], headers=alice).json()
        seen += [p["id"] for p in page["processes"]]
        nxt = next((link for link in page["links"] if link["rel"] == "next"), None)
    assert seen == ["a1", "a2", "a3", "a4", "a5"]
    assert len(client.get(f"{API}/process_graphs?limit=", headers=alice).json()["processes"]) == 5
    for bad in ("0", "-1", "x"):
        r = client.get(f"{API}/process_graphs?limit={bad}", headers=alice)
        assert r.status_code == 400 and r.json()["code"] == "BadRequest"
