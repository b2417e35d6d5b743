"""load_stac cannot make the server read its own files or network (issue 16, item 1): asset
hrefs must be http(s), every URL it fetches must be a public address unless the administrator
allows more (TERRACUBE_FETCH_ALLOWED_HOSTS), and the answers do not tell existing from missing
local files. Through the real HTTP API, with STAC documents on a loopback HTTP server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.conftest import basic_login
from tests.support.fakes import EmptyCatalog
from tests.support.processes import StaticHttpServer

from terracube.api.app import create_app
from terracube.settings import Settings

API = "/openeo/1.2"
LOOPBACK = ["127.0.0.1/32"]


def item(asset_href: str) -> dict:
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": "i1",
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1],
                                                         [0, 0]]]},
        "bbox": [0, 0, 1, 1], "properties": {"datetime": "2024-01-01T00:00:00Z"},
        "links": [],
        "assets": {"data": {"href": asset_href, "type": "image/tiff; application=geotiff",
                            "roles": ["data"]}}}


@pytest.fixture
def stac_site(tmp_path):
    """A secret file on the server's disk, and items on a loopback web server pointing at it,
    at a missing file and at GDAL virtual paths."""
    secret = tmp_path / "secret.tif"
    secret.write_bytes(b"II*\x00 private data of another user")
    site = tmp_path / "site"
    site.mkdir()
    hrefs = {"existing": secret.as_uri(), "missing": (tmp_path / "nope.tif").as_uri(),
             "path": str(secret), "vsicurl": f"/vsicurl/{secret.as_uri()}",
             "vsizip": f"/vsizip/{secret}"}
    for name, href in hrefs.items():
        (site / f"{name}.json").write_text(json.dumps(item(href)))
    with StaticHttpServer(site) as server:
        yield server


def client_for(tmp_path: Path, allowed: list[str]) -> tuple[TestClient, dict]:
    app = create_app(Settings(data_dir=tmp_path / "data", fetch_allowed_hosts=allowed),
                     catalog=EmptyCatalog())
    app.state.users.add("alice", "wonderland")
    client = TestClient(app, raise_server_exceptions=False)
    return client, basic_login(client, "alice", "wonderland")


def load_stac(client, headers, url: str):
    graph = {"load": {"process_id": "load_stac", "arguments": {"url": url}, "result": True}}
    return client.post(f"{API}/result", json={"process": {"process_graph": graph}},
                       headers=headers)


def test_asset_hrefs_must_be_http_and_do_not_reveal_local_files(tmp_path, stac_site):
    client, alice = client_for(tmp_path, LOOPBACK)
    messages = {}
    for name in ("existing", "missing"):
        r = load_stac(client, alice, f"{stac_site.url}/{name}.json")
        assert r.status_code == 400, (name, r.text)
        body = r.json()
        assert body["code"] == "ProcessParameterInvalid", body
        assert "Only http:// and https://" in body["message"]
        assert "secret" not in body["message"] and "nope" not in body["message"]
        messages[name] = body["message"]
    # The same answer whether the local file exists or not.
    assert messages["existing"] == messages["missing"]
    # Paths (GDAL /vsi* ones too) are refused, or read relative to the document as URLs on
    # its web server (which has no such files); never as files of the terracube server.
    for name in ("path", "vsicurl", "vsizip"):
        r = load_stac(client, alice, f"{stac_site.url}/{name}.json")
        assert r.status_code == 400, (name, r.text)
        message = r.json()["message"]
        assert "Only http:// and https://" in message or (
            stac_site.url in message and "404" in message), (name, message)


def test_loopback_stac_servers_need_the_administrators_allow_list(tmp_path, stac_site):
    client, alice = client_for(tmp_path, [])
    r = load_stac(client, alice, f"{stac_site.url}/existing.json")
    assert r.status_code == 400, r.text
    assert "not a public internet address" in r.json()["message"]
    assert "TERRACUBE_FETCH_ALLOWED_HOSTS" in r.json()["message"]


def test_an_asset_on_a_private_host_is_refused_even_from_an_allowed_document(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "item.json").write_text(json.dumps(item("http://169.254.169.254/latest/x.tif")))
    with StaticHttpServer(site) as server:
        client, alice = client_for(tmp_path, LOOPBACK)
        r = load_stac(client, alice, f"{server.url}/item.json")
    assert r.status_code == 400, r.text
    assert "169.254.169.254" in r.json()["message"]
    assert "not a public internet address" in r.json()["message"]


def test_load_ml_model_does_not_tell_closed_from_open_local_ports(tmp_path, stac_site):
    from tests.support.processes import free_port

    client, alice = client_for(tmp_path, [])
    answers = []
    for port in (stac_site.url.rsplit(":", 1)[1], free_port()):
        graph = {"m": {"process_id": "load_ml_model", "arguments": {
            "uri": f"http://127.0.0.1:{port}/model.json"}, "result": True}}
        r = client.post(f"{API}/result", json={"process": {"process_graph": graph}},
                        headers=alice)
        assert r.status_code == 400, r.text
        assert "not a public internet address" in r.json()["message"]
        answers.append(r.json()["message"].replace(str(port), "PORT"))
    assert answers[0] == answers[1]
