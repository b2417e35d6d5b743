"""POST /result and POST /validation through the real processing module, with a tiny registry."""

from __future__ import annotations

import asyncio
import tempfile

import pytest
from fastapi.testclient import TestClient
from tests.support.fakes import EmptyCatalog

from terracube import errors
from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings

API = "/openeo/1.2"


def add(x, y):
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # good: not on the event loop
    else:
        raise AssertionError("process code ran on the event loop")
    return x + y


def fail(x):
    raise errors.ProcessParameterInvalid("x is not acceptable", argument="x")


def buggy(x):
    return {}["missing"]  # a bug of ours: the user must see a 500 with an id, not a 400


@pytest.fixture
def result_tmp(tmp_path, monkeypatch):
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def client(tmp_path) -> TestClient:
    registry = ProcessRegistry({"add": add, "fail": fail, "buggy": buggy})
    app = create_app(Settings(data_dir=tmp_path / "data"), catalog=EmptyCatalog(),
                     registry=registry)
    app.state.users.add("alice", "wonderland")
    return TestClient(app)


@pytest.fixture
def auth(client) -> dict[str, str]:
    token = client.get(f"{API}/credentials/basic", auth=("alice", "wonderland")).json()
    return {"Authorization": f"Bearer basic//{token['access_token']}"}


def graph(process_id: str, **arguments) -> dict:
    return {"process_graph": {"n1": {"process_id": process_id, "arguments": arguments,
                                     "result": True}}}


def test_result_streams_the_file_and_cleans_up(client, auth, result_tmp):
    r = client.post(f"{API}/result", json={"process": graph("add", x=1, y=2)}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == 3
    assert r.headers["openeo-costs"] == "0"
    assert "result.json" in r.headers["content-disposition"]
    assert list(result_tmp.iterdir()) == []


def test_result_error_is_openeo_json_and_cleans_up(client, auth, result_tmp):
    r = client.post(f"{API}/result", json={"process": graph("fail", x=1)}, headers=auth)
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == "ProcessParameterInvalid"
    assert "n1" in body["message"]
    assert list(result_tmp.iterdir()) == []


def test_a_bug_in_a_process_is_a_500_with_an_error_id(client, auth, result_tmp, caplog):
    r = client.post(f"{API}/result", json={"process": graph("buggy", x=1)}, headers=auth)
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "Internal"
    assert body["id"] in body["message"] and "n1" in body["message"]
    assert "KeyError" not in body["message"]  # details stay in the log, under that id
    assert any(body["id"] in rec.getMessage() and rec.exc_info for rec in caplog.records)
    assert list(result_tmp.iterdir()) == []


def test_result_needs_a_process(client, auth):
    for body in ({}, {"process": {}}, {"process": {"process_graph": "x"}},
                 {"process_graph": graph("add", x=1, y=2)["process_graph"]}):
        r = client.post(f"{API}/result", json=body, headers=auth)
        assert r.status_code == 400
        assert r.json()["code"] == "ProcessGraphMissing"


def test_result_accepts_extra_properties(client, auth):
    body = {"process": graph("add", x=1, y=2), "budget": None, "plan": None,
            "log_level": "info", "vendor_option": True}
    assert client.post(f"{API}/result", json=body, headers=auth).json() == 3


def test_result_unknown_process(client, auth):
    r = client.post(f"{API}/result", json={"process": graph("nope")}, headers=auth)
    assert r.status_code == 400
    assert r.json()["code"] == "ProcessUnsupported"


def test_validation_of_an_empty_body_is_200(client):
    r = client.post(f"{API}/validation", json={})
    assert r.status_code == 200
    assert [e["code"] for e in r.json()["errors"]] == ["ProcessGraphMissing"]


def test_validation_valid_process(client):
    r = client.post(f"{API}/validation", json=graph("add", x=1, y=2))
    assert r.status_code == 200
    assert r.json() == {"errors": []}


def test_validation_reports_problems_with_200(client, auth):
    r = client.post(f"{API}/validation", json=graph("add", x=1, z=3), headers=auth)
    assert r.status_code == 200
    problems = r.json()["errors"]
    assert {e["code"] for e in problems} == {"ProcessParameterRequired",
                                             "ProcessParameterUnsupported"}
    for e in problems:
        assert {"code", "message"} <= set(e)
    r = client.post(f"{API}/validation", json=graph("nope"))
    assert [e["code"] for e in r.json()["errors"]] == ["ProcessUnsupported"]


def test_several_save_results_come_as_a_tar_and_are_cleaned_up(tmp_path, registry,
                                                                 result_tmp):
    """Every save_result is written, as in a batch job; several files: one tar (the API's
    recommendation for POST /result)."""
    import io
    import json
    import tarfile

    app = create_app(Settings(data_dir=tmp_path / "data"), catalog=EmptyCatalog(),
                     registry=registry)
    app.state.users.add("alice", "wonderland")
    client = TestClient(app)
    token = client.get(f"{API}/credentials/basic", auth=("alice", "wonderland")).json()
    headers = {"Authorization": f"Bearer basic//{token['access_token']}"}
    process = {"process_graph": {
        "first": {"process_id": "save_result",
                  "arguments": {"data": [1, 2, 3], "format": "JSON"}},
        "second": {"process_id": "save_result", "arguments": {"data": 4, "format": "JSON"},
                   "result": True}}}
    r = client.post(f"{API}/result", json={"process": process}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-tar"
    assert "result.tar" in r.headers["content-disposition"]
    with tarfile.open(fileobj=io.BytesIO(r.content)) as archive:
        got = {m.name: json.load(archive.extractfile(m)) for m in archive.getmembers()}
    assert got == {"result_first.json": [1, 2, 3], "result_second.json": 4}
    assert list(result_tmp.iterdir()) == []
