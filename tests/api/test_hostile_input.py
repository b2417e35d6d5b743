"""Hostile and careless input through the real HTTP API (issue 16, "Found by a probe"): every
case answers a 4xx openEO error, never a 500, and nothing unreadable gets stored."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient
from tests.conftest import basic_login
from tests.support.data import data_dir_with_samples
from tests.support.fakes import EmptyCatalog

from terracube.api.app import create_app
from terracube.catalog import Catalog
from terracube.settings import Settings

API = "/openeo/1.2"
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(tmp_path, registry) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path / "data"), catalog=EmptyCatalog(),
                     registry=registry)
    app.state.users.add("alice", "wonderland")
    app.state.users.add("bob", "builder")
    return TestClient(app, raise_server_exceptions=False)


def process(graph: dict) -> dict:
    return {"process_graph": graph}


def one_node(process_id: str, **arguments) -> dict:
    return {"r": {"process_id": process_id, "arguments": arguments, "result": True}}


def post_to_all_graph_endpoints(client, alice, body_process: dict):
    """The answers of /result, /validation, POST /jobs and PUT /process_graphs."""
    return {
        "result": client.post(f"{API}/result", json={"process": body_process}, headers=alice),
        "validation": client.post(f"{API}/validation", json=body_process),
        "jobs": client.post(f"{API}/jobs", json={"process": body_process}, headers=alice),
        "udp": client.put(f"{API}/process_graphs/p1", json=body_process, headers=alice),
    }


def error_of(response) -> dict:
    """The openEO error of a 4xx answer, or of the one problem /validation reports."""
    if response.status_code == 200 and "errors" in response.json():
        problems = response.json()["errors"]
        assert len(problems) == 1, problems
        return problems[0]
    assert 400 <= response.status_code < 500, response.text
    return response.json()


# --- item 7: small 5xx from bad input ------------------------------------------------------------
def test_from_node_object_is_refused_by_all_four_graph_endpoints(client, alice):
    graph = {"a": {"process_id": "absolute", "arguments": {"x": {"from_node": {}}},
                   "result": True}}
    for endpoint, response in post_to_all_graph_endpoints(client, alice, process(graph)).items():
        error = error_of(response)
        assert error["code"] == "ProcessGraphInvalid", (endpoint, error)
        assert "from_node" in error["message"]
        if endpoint != "validation":
            assert response.status_code == 400
    assert client.get(f"{API}/process_graphs", headers=alice).json()["processes"] == []


def test_huge_page_limit_is_a_page_not_a_500(client, alice):
    r = client.post(f"{API}/jobs", json={"process": process(one_node("absolute", x=-1))},
                    headers=alice)
    assert r.status_code == 201, r.text
    r = client.get(f"{API}/jobs?limit=9223372036854775807", headers=alice)
    assert r.status_code == 200, r.text
    assert len(r.json()["jobs"]) == 1
    r = client.get(f"{API}/process_graphs?limit=9223372036854775807&offset=99999999999999999999",
                   headers=alice)
    assert r.status_code == 200 and r.json()["processes"] == []


@pytest.mark.parametrize("where", ["node id", "text"])
def test_lone_surrogates_are_refused_and_nothing_unreadable_is_stored(client, alice, where):
    node_id, text = ("\\ud800", "t") if where == "node id" else ("r", "a\\udc00b")
    graph = (f'{{"{node_id}": {{"process_id": "absolute", "arguments": {{"x": 1}}, '
             '"result": true}}')
    job = f'{{"title": "{text}", "process": {{"process_graph": {graph}}}}}'
    udp = f'{{"summary": "{text}", "process_graph": {graph}}}'
    for r in (client.post(f"{API}/jobs", content=job, headers={**alice, **JSON}),
              client.put(f"{API}/process_graphs/p1", content=udp, headers={**alice, **JSON})):
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "BadRequest" and "surrogate" in r.json()["message"]
    listed = client.get(f"{API}/jobs", headers=alice)
    assert listed.status_code == 200 and listed.json()["jobs"] == []
    listed = client.get(f"{API}/process_graphs", headers=alice)
    assert listed.status_code == 200 and listed.json()["processes"] == []


def test_array_create_with_a_huge_repeat_is_refused_before_allocating(client, alice):
    for repeat in (1e12, 10**12):
        r = client.post(f"{API}/result", headers=alice, json={"process": process(
            one_node("array_create", data=[1, 2], repeat=repeat))})
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "ProcessParameterInvalid"
        assert "repeat" in r.json()["message"]
    r = client.post(f"{API}/result", headers=alice, json={"process": process(
        one_node("array_create", data=[1, 2], repeat=3))})
    assert r.json() == [1, 2] * 3


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_standard_json_numbers_are_refused(client, alice, token):
    body = ('{"process": {"process_graph": {"r": {"process_id": "add", "arguments": '
            f'{{"x": {token}, "y": 1}}, "result": true}}}}}}')
    for path, raw in (("/result", body), ("/jobs", body),
                      ("/validation", body[len('{"process": '):-1])):
        r = client.post(f"{API}{path}", content=raw, headers={**alice, **JSON})
        assert r.status_code == 400, (path, r.text)
        assert r.json()["code"] == "BadRequest" and token.lstrip("-") in r.json()["message"]


def test_a_computed_nan_is_sent_as_the_nan_token(client, alice):
    # the official process tests (wp5) compare NaN results: JSON results keep the token
    graph = {"z": {"process_id": "divide", "arguments": {"x": 0, "y": 0}},
             "r": {"process_id": "array_create", "arguments": {"data": [
                 {"from_node": "z"}, 1.5]}, "result": True}}
    r = client.post(f"{API}/result", json={"process": process(graph)}, headers=alice)
    assert r.status_code == 200, r.text
    value = r.json()  # Python's json reads the NaN token, as the official client does
    assert math.isnan(value[0]) and value[1] == 1.5


@pytest.fixture(scope="module")
def sample_client(tmp_path_factory, sample_data_dir) -> TestClient:
    data = data_dir_with_samples(tmp_path_factory.mktemp("hostile") / "data", sample_data_dir)
    settings = Settings(data_dir=data)
    app = create_app(settings, catalog=Catalog(settings))
    app.state.users.add("alice", "wonderland")
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("resolution", [1e308, [10, 1e308], 1e-300])
def test_resample_spatial_to_an_absurd_resolution_is_refused(sample_client, resolution):
    alice = basic_login(sample_client, "alice", "wonderland")
    graph = {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "bands": ["B04"],
            "temporal_extent": ["2022-06-17", "2022-06-18"],
            "spatial_extent": {"west": 679720, "south": 5151080, "east": 680680,
                               "north": 5151920, "crs": 32632}}},
        "resample": {"process_id": "resample_spatial", "arguments": {
            "data": {"from_node": "load"}, "resolution": resolution}},
        "save": {"process_id": "save_result", "arguments": {
            "data": {"from_node": "resample"}, "format": "GTiff"}, "result": True}}
    r = sample_client.post(f"{API}/result", json={"process": process(graph)}, headers=alice)
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "ProcessParameterInvalid"
    assert "resolution" in r.json()["message"]


# --- item 6: deep structures ---------------------------------------------------------------------
def nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize("levels", [150, 600, 5000])
def test_over_deep_json_is_refused_at_the_door(client, alice, levels):
    graph = one_node("absolute", x=nested(levels)) if levels < 900 else None
    raw = ('{"process_graph": ' + "[" * levels + "]" * levels + "}") if graph is None else None
    for endpoint, response in (post_to_all_graph_endpoints(client, alice, process(graph))
                               if graph else {
        "validation": client.post(f"{API}/validation", content=raw, headers=JSON),
        "udp": client.put(f"{API}/process_graphs/p1", content=raw, headers={**alice, **JSON}),
    }).items():
        assert response.status_code == 400, (endpoint, response.text)
        assert response.json()["code"] == "BadRequest"
        assert "deep" in response.json()["message"]
    # Nothing was stored, so listing and reading the user's processes keeps working.
    assert client.get(f"{API}/process_graphs", headers=alice).json()["processes"] == []


def test_nesting_within_the_limit_is_accepted(client, alice):
    # is_valid takes any data type: storing checks argument types now, and the nesting is
    # what is tested here.
    graph = one_node("is_valid", x=nested(60))
    r = client.put(f"{API}/process_graphs/p1", json=process(graph), headers=alice)
    assert r.status_code == 200, r.text
    assert client.get(f"{API}/process_graphs/p1", headers=alice).status_code == 200
    assert client.get(f"{API}/process_graphs", headers=alice).status_code == 200


def chain(length: int) -> dict:
    graph = {f"n{i}": {"process_id": "add", "arguments": {
        "x": {"from_node": f"n{i - 1}"} if i else 0, "y": 1}} for i in range(length)}
    graph[f"n{length - 1}"]["result"] = True
    return graph


def test_a_chain_at_the_limit_evaluates(client, alice):
    r = client.post(f"{API}/result", json={"process": process(chain(300))}, headers=alice)
    assert r.status_code == 200, r.text
    assert r.json() == 300


@pytest.mark.parametrize("length", [301, 2001])
def test_longer_chains_are_refused_naming_the_limit(client, alice, length):
    for endpoint, response in post_to_all_graph_endpoints(
            client, alice, process(chain(length))).items():
        assert response.status_code == 400, (endpoint, response.text)
        assert response.json()["code"] == "ProcessGraphInvalid"
        assert "TERRACUBE_MAX_GRAPH_CHAIN" in response.json()["message"]


def test_too_many_nodes_are_refused(tmp_path, registry):
    app = create_app(Settings(data_dir=tmp_path / "d", max_graph_nodes=50),
                     catalog=EmptyCatalog(), registry=registry)
    client = TestClient(app, raise_server_exceptions=False)
    graph = {f"n{i}": {"process_id": "add", "arguments": {"x": i, "y": 1}} for i in range(51)}
    graph["n0"]["result"] = True
    r = client.post(f"{API}/validation", json=process(graph))
    assert r.status_code == 400 and "TERRACUBE_MAX_GRAPH_NODES" in r.json()["message"]


def test_chain_limit_also_holds_inside_callbacks(client, alice):
    inner = chain(301)
    graph = one_node("apply", data=[1], process=process(inner))
    r = client.post(f"{API}/validation", json=process(graph))
    assert r.status_code == 400 and "TERRACUBE_MAX_GRAPH_CHAIN" in r.json()["message"]




# --- item 4: request body size -------------------------------------------------------------
def test_request_bodies_over_the_limit_are_refused_uploads_are_not(tmp_path, registry):
    app = create_app(Settings(data_dir=tmp_path / "d", max_request_body_bytes=100_000),
                     catalog=EmptyCatalog(), registry=registry)
    app.state.users.add("alice", "wonderland")
    client = TestClient(app, raise_server_exceptions=False)
    alice = basic_login(client, "alice", "wonderland")
    big = {"process_graph": one_node("absolute", x=1), "description": "x" * 200_000}
    # Announced by Content-Length, anonymous /validation too.
    r = client.post(f"{API}/validation", json=big)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "PayloadTooLarge"
    assert "TERRACUBE_MAX_REQUEST_BODY_BYTES" in r.json()["message"]
    # Streamed without Content-Length (chunked).
    def chunks():
        yield b'{"process_graph": {}, "description": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'"}'
    r = client.post(f"{API}/validation", content=chunks(), headers=JSON)
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "PayloadTooLarge"
    # Small bodies pass; uploads stream under the quota instead.
    assert client.post(f"{API}/validation",
                       json={"process_graph": one_node("absolute", x=1)}).status_code == 200
    r = client.put(f"{API}/files/big.bin", content=b"z" * 300_000,
                   headers={**alice, "content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text


# --- item 8: smaller ones ---------------------------------------------------------------
@pytest.mark.parametrize(("range_header", "status", "code"), [
    ("bytes=abc", 400, "BadRequest"), ("pages=0-1", 400, "BadRequest"),
    ("bytes=20-10", 400, "BadRequest"), ("bytes=500-600", 416, "RangeNotSatisfiable")])
def test_bad_range_headers_answer_openeo_json(client, alice, range_header, status, code):
    r = client.put(f"{API}/files/f.bin", content=bytes(range(100)),
                   headers={**alice, "content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    r = client.get(f"{API}/files/f.bin", headers={**alice, "Range": range_header})
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json()["code"] == code and r.json()["message"]
    # A good range still works.
    r = client.get(f"{API}/files/f.bin", headers={**alice, "Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == bytes(range(10, 20))


def test_racing_puts_never_store_a_cycle(client, alice):
    from concurrent.futures import ThreadPoolExecutor

    def uses(other: str) -> dict:
        return {"process_graph": {"n": {"process_id": other, "arguments": {},
                                        "result": True}}}

    def put(pid: str, body: dict) -> int:
        return client.put(f"{API}/process_graphs/{pid}", json=body, headers=alice).status_code

    with ThreadPoolExecutor(4) as pool:
        for round_ in range(15):
            a, b = f"a{round_}", f"b{round_}"
            # both exist first (each using a predefined process), then each is made to use
            # the other at the same time: at most one of the two may succeed.
            assert put(a, uses("absolute")) == 200 and put(b, uses("absolute")) == 200
            statuses = list(pool.map(lambda args: put(*args), [(a, uses(b)), (b, uses(a))]))
            assert sorted(statuses) == [200, 400], statuses


def test_failed_logins_are_rate_limited_per_user_name(client):
    for _ in range(10):
        r = client.get(f"{API}/credentials/basic", auth=("alice", "wrong"))
        assert r.status_code == 403, r.text
    r = client.get(f"{API}/credentials/basic", auth=("alice", "wonderland"))
    assert r.status_code == 429, r.text
    assert r.json()["code"] == "TooManyRequests"
    assert int(r.headers["Retry-After"]) >= 1
    # Another user name is not affected.
    assert client.get(f"{API}/credentials/basic", auth=("bob", "builder")).status_code == 200
