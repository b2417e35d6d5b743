"""Error responses (openEO error JSON, codes and statuses per errors.json) and CORS."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from terracube import errors
from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings

API = "/openeo/1.2"


@pytest.fixture(scope="module")
def error_codes(shared_dir) -> dict[str, dict]:
    return json.loads((shared_dir / "openeo-api" / "errors.json").read_text())


class BrokenCatalog:
    """A catalog with a bug: every call fails with an unexpected exception."""

    def collection_ids(self) -> list[str]:
        raise RuntimeError("secret internal detail")

    def get(self, collection_id: str):
        raise errors.CollectionNotFound(f"no collection {collection_id}")


@pytest.fixture
def client(tmp_path) -> TestClient:
    app = create_app(Settings(data_dir=tmp_path), catalog=BrokenCatalog(),
                     registry=ProcessRegistry())
    router = APIRouter()

    @router.get("/typed/{number}")
    def typed(number: int, limit: int = 10) -> dict:
        return {"number": number, "limit": limit}

    app.include_router(router, prefix=API)
    return TestClient(app)


def assert_openeo_error(response, code: str, status: int, error_codes: dict | None = None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"id", "code", "message", "links"}
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["id"], str) and body["id"]
    assert body["links"] == []
    if error_codes is not None and code in error_codes:
        assert error_codes[code]["http"] == status, f"{code} must be HTTP {status}"
    return body


def test_openeo_error_from_a_service(client, error_codes):
    r = client.get(f"{API}/collections/NOPE")
    assert_openeo_error(r, "CollectionNotFound", 404, error_codes)


def test_unknown_route(client, error_codes):
    body = assert_openeo_error(client.get(f"{API}/nothing/here"), "NotFound", 404, error_codes)
    assert "/openeo/1.2/nothing/here" in body["message"]
    assert_openeo_error(client.get("/elsewhere"), "NotFound", 404, error_codes)


def test_wrong_method(client):
    r = client.delete(f"{API}/collections")
    body = assert_openeo_error(r, "MethodNotAllowed", 405)
    assert r.headers["allow"] == "GET"
    assert "DELETE" in body["message"]


def test_malformed_json_body(client, error_codes):
    r = client.post(f"{API}/validation", content=b'{"process_graph": ',
                    headers={"Content-Type": "application/json"})
    assert_openeo_error(r, "BadRequest", 400, error_codes)


def test_json_body_must_be_an_object(client):
    r = client.post(f"{API}/validation", json=[1, 2])
    assert_openeo_error(r, "BadRequest", 400)


def test_invalid_path_parameter_is_404(client, error_codes):
    assert_openeo_error(client.get(f"{API}/typed/abc"), "NotFound", 404, error_codes)


def test_invalid_query_parameter_is_400(client):
    body = assert_openeo_error(client.get(f"{API}/typed/1?limit=many"), "BadRequest", 400)
    assert "limit" in body["message"]


def test_unexpected_exception_is_internal_and_logged(client, error_codes, caplog):
    with caplog.at_level(logging.ERROR):
        r = client.get(f"{API}/collections", headers={"Origin": "https://editor.openeo.org"})
    body = assert_openeo_error(r, "Internal", 500, error_codes)
    assert "secret internal detail" not in body["message"]
    assert body["id"] in body["message"]
    assert "secret internal detail" in caplog.text and body["id"] in caplog.text
    # CORS headers also on this path, or browsers would hide the error.
    assert r.headers["access-control-allow-origin"] == "https://editor.openeo.org"


# --- CORS ----------------------------------------------------------------------------------------
# the client reads the ranges of large downloads
# Never a CORS-safelisted header such as Content-Length (the API: "MUST NOT be included").
EXPOSED = {"Location", "OpenEO-Identifier", "OpenEO-Costs", "Link", "Accept-Ranges",
           "Content-Range"}


def exposed(response) -> set[str]:
    return {h.strip() for h in response.headers["access-control-expose-headers"].split(",")}


def test_cors_headers_on_every_response(client):
    for r in (client.get(f"{API}/"), client.get("/.well-known/openeo"),
              client.get(f"{API}/nothing"), client.get(f"{API}/me")):
        assert r.headers["access-control-allow-origin"] == "*"
        assert r.headers["access-control-allow-credentials"] == "true"
        assert exposed(r) == EXPOSED


def test_cors_echoes_the_origin(client):
    r = client.get(f"{API}/", headers={"Origin": "https://editor.openeo.org"})
    assert r.headers["access-control-allow-origin"] == "https://editor.openeo.org"
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in r.headers["vary"]


def test_cors_preflight(client):
    r = client.options(f"{API}/result", headers={
        "Origin": "https://editor.openeo.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Content-Type",
    })
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["access-control-allow-origin"] == "https://editor.openeo.org"
    assert r.headers["access-control-allow-credentials"] == "true"
    methods = {m.strip() for m in r.headers["access-control-allow-methods"].split(",")}
    assert methods == {"OPTIONS", "POST"}
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert exposed(r) == EXPOSED
    assert r.headers["content-type"] == "application/json"


def test_options_without_preflight_headers(client):
    # "All endpoints must respond to the OPTIONS HTTP method" with 204, not only preflights.
    r = client.options(f"{API}/collections/{{collection_id}}".replace("{collection_id}", "S2"))
    assert r.status_code == 204
    assert {m.strip() for m in r.headers["access-control-allow-methods"].split(",")} == {
        "OPTIONS", "GET"}
    assert r.headers["access-control-allow-origin"] == "*"
