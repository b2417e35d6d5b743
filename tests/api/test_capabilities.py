"""Discovery endpoints: well-known, capabilities (endpoints = the app's routes), conformance,
file formats, UDF runtimes, collections and processes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from terracube import errors
from terracube.api.app import create_app
from terracube.engine.registry import ProcessRegistry
from terracube.settings import Settings

API = "/openeo/1.2"


class FakeSource:
    def __init__(self, collection_id: str, license: str = "CC-BY-4.0") -> None:
        self.collection_id = collection_id
        self.license = license

    def stac(self) -> dict:
        return {
            "type": "Collection", "stac_version": "1.0.0", "id": self.collection_id,
            "description": "A test collection.", "license": self.license,
            "extent": {"spatial": {"bbox": [[10, 45, 11, 46]]},
                       "temporal": {"interval": [["2023-01-01T00:00:00Z", None]]}},
            "cube:dimensions": {"bands": {"type": "bands", "values": ["B04"]}},
            "summaries": {"gsd": [10]},
        }


class FakeCatalog:
    """Stands in for terracube.catalog.Catalog: collection_ids() and get(id)."""

    def __init__(self, *sources: FakeSource) -> None:
        self.sources = {s.collection_id: s for s in sources}

    def collection_ids(self) -> list[str]:
        return sorted(self.sources)

    def get(self, collection_id: str) -> FakeSource:
        try:
            return self.sources[collection_id]
        except KeyError:
            raise errors.CollectionNotFound(f"no collection {collection_id}") from None


@pytest.fixture
def client(tmp_path) -> TestClient:
    registry = ProcessRegistry({"add": lambda x, y: x + y})
    catalog = FakeCatalog(FakeSource("S2"), FakeSource("PRIVATE", license="proprietary"))
    app = create_app(Settings(data_dir=tmp_path), catalog=catalog, registry=registry)
    return TestClient(app)


def test_well_known(client):
    r = client.get("/.well-known/openeo")
    assert r.status_code == 200
    (version,) = r.json()["versions"]
    assert version["url"] == "http://testserver/openeo/1.2/"
    assert version["api_version"] == "1.2.0"
    assert version["production"] is False


def test_well_known_uses_public_url(tmp_path):
    settings = Settings(data_dir=tmp_path, public_url="https://eo.example.org/tc/")
    app = create_app(settings, catalog=FakeCatalog(), registry=ProcessRegistry())
    r = TestClient(app).get("/.well-known/openeo")
    assert r.json()["versions"][0]["url"] == "https://eo.example.org/tc/openeo/1.2/"


def test_host_root_redirects_json_clients_to_api(client):
    """Browsers get the web page at / (tests/web); a client asking for JSON the API."""
    r = client.get("/", headers={"Accept": "application/json"}, follow_redirects=False)
    assert r.status_code in (301, 302, 307, 308)
    assert r.headers["location"] == f"{API}/"
    assert client.get(API, follow_redirects=True).json()["api_version"] == "1.2.0"
    assert client.get("/", headers={"Accept": "text/html"}).headers["content-type"].startswith(
        "text/html")


def test_capabilities_link_the_web_page(client):
    links = client.get(f"{API}/").json()["links"]
    (page,) = [link for link in links if link["rel"] == "alternate"]
    assert page["href"] == "http://testserver/" and page["type"] == "text/html"
    assert client.get(page["href"]).text.lstrip().startswith("<!doctype html>")


def test_capabilities(client):
    import terracube

    r = client.get(f"{API}/")
    assert r.status_code == 200
    caps = r.json()
    for key in ("id", "title", "description", "api_version", "backend_version",
                "stac_version", "endpoints", "links"):
        assert key in caps
    assert caps["api_version"] == "1.2.0"
    assert caps["backend_version"] == terracube.__version__
    assert caps["stac_version"] == "1.0.0"
    assert caps["type"] == "Catalog"
    assert caps["production"] is False
    rels = {link["rel"]: link["href"] for link in caps["links"]}
    assert rels["version-history"] == "http://testserver/.well-known/openeo"
    assert rels["conformance"] == "http://testserver/openeo/1.2/conformance"
    assert rels["data"] == "http://testserver/openeo/1.2/collections"
    assert "terms-of-service" not in rels  # clients would force users to agree to nothing
    assert all(link["href"].startswith("http") for link in caps["links"])


def test_capabilities_endpoints_are_exactly_the_routes(client):
    endpoints = client.get(f"{API}/").json()["endpoints"]
    listed = {(e["path"], m) for e in endpoints for m in e["methods"]}
    assert len({e["path"] for e in endpoints}) == len(endpoints), "each path once"
    expected = {
        ("/collections", "GET"), ("/collections/{collection_id}", "GET"),
        ("/collections/{collection_id}/queryables", "GET"),
        ("/conformance", "GET"), ("/credentials/basic", "GET"), ("/file_formats", "GET"),
        ("/me", "GET"), ("/processes", "GET"), ("/result", "POST"), ("/service_types", "GET"),
        ("/udf_runtimes", "GET"), ("/validation", "POST"), ("/explain", "POST"),
        ("/process_graphs", "GET"), ("/process_graphs/{process_graph_id}", "GET"),
        ("/process_graphs/{process_graph_id}", "PUT"),
        ("/process_graphs/{process_graph_id}", "DELETE"),
        ("/files", "GET"), ("/files/{path}", "GET"), ("/files/{path}", "PUT"),
        ("/files/{path}", "DELETE"),
        ("/jobs", "GET"), ("/jobs", "POST"), ("/jobs/{job_id}", "GET"),
        ("/jobs/{job_id}", "PATCH"), ("/jobs/{job_id}", "DELETE"),
        ("/jobs/{job_id}/estimate", "GET"), ("/jobs/{job_id}/logs", "GET"),
        ("/jobs/{job_id}/results", "GET"), ("/jobs/{job_id}/results", "POST"),
        ("/jobs/{job_id}/results", "DELETE"), ("/processing_parameters", "GET"),
        ("/services", "GET"), ("/services", "POST"), ("/services/{service_id}", "GET"),
        ("/services/{service_id}", "PATCH"), ("/services/{service_id}", "DELETE"),
        ("/services/{service_id}/logs", "GET"),
    }  # and /terracube/admin/overview for administrators (tests/api/test_admin.py)
    assert listed == expected
    for path, method in listed:
        # Every listed endpoint answers (with something other than 404/405) ...
        url = API + path.replace("{collection_id}", "S2")
        assert client.request(method, url).status_code not in (404, 405), (method, path)
    # ... and the spec's other endpoints are not implemented.
    assert client.get(f"{API}/jobs/j/results/x").status_code == 404


def test_endpoints_follow_new_routes(client):
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/example/{example_id}")
    @router.delete("/example/{example_id}")
    def service(example_id: str) -> dict:
        return {}

    client.app.include_router(router, prefix=API)
    endpoints = client.get(f"{API}/").json()["endpoints"]
    assert {"path": "/example/{example_id}", "methods": ["GET", "DELETE"]} in endpoints


def test_conformance_equals_capabilities(client):
    conforms = client.get(f"{API}/conformance").json()["conformsTo"]
    assert "https://api.openeo.org/1.2.0" in conforms
    assert client.get(f"{API}/").json()["conformsTo"] == conforms


def test_file_formats(client):
    from terracube.results.formats import file_formats

    r = client.get(f"{API}/file_formats")
    assert r.status_code == 200
    assert r.json() == file_formats()
    assert set(r.json()) == {"input", "output"}


def test_udf_runtimes(client):
    runtimes = client.get(f"{API}/udf_runtimes").json()
    assert set(runtimes) == {"Python"}
    assert runtimes["Python"]["type"] == "language" and runtimes["Python"]["versions"]


def test_list_collections(client):
    r = client.get(f"{API}/collections")
    assert r.status_code == 200
    body = r.json()
    assert [c["id"] for c in body["collections"]] == ["PRIVATE", "S2"]
    s2 = body["collections"][1]
    for key in ("stac_version", "id", "description", "license", "extent", "links"):
        assert key in s2
    # The large parts are only in the full description.
    # The datacube extension is declared, so cube:dimensions stays; summaries do not.
    assert "summaries" not in s2 and "cube:dimensions" in s2
    assert {link["rel"] for link in body["links"]} >= {"self", "root"}


def test_describe_collection(client):
    r = client.get(f"{API}/collections/S2")
    assert r.status_code == 200
    doc = r.json()
    assert doc["id"] == "S2"
    assert doc["cube:dimensions"]["bands"]["values"] == ["B04"]
    assert doc["summaries"] == {"gsd": [10]}
    links = {link["rel"]: link["href"] for link in doc["links"]}
    assert links["self"] == "http://testserver/openeo/1.2/collections/S2"
    assert links["root"] == "http://testserver/openeo/1.2/"
    assert links["parent"] == "http://testserver/openeo/1.2/"
    assert links["license"] == "https://spdx.org/licenses/CC-BY-4.0.html"


def test_proprietary_license_gets_no_made_up_link(client):
    doc = client.get(f"{API}/collections/PRIVATE").json()
    assert "license" not in {link["rel"] for link in doc["links"]}


def test_unknown_collection(client):
    r = client.get(f"{API}/collections/NOPE")
    assert r.status_code == 404
    assert r.json()["code"] == "CollectionNotFound"


def test_list_processes(client):
    r = client.get(f"{API}/processes")
    assert r.status_code == 200
    body = r.json()
    assert [p["id"] for p in body["processes"]] == ["add"]
    add = body["processes"][0]
    for key in ("id", "description", "parameters", "returns"):
        assert key in add
    assert isinstance(body["links"], list)
