"""Secondary web services through the HTTP API (in-process app, real catalog of the generated
samples): /service_types, the life cycle of an XYZ service per the API, isolation between
users, configuration errors, tiles (zoom range, empty tiles, cache invalidation, parameters
from the query string) and the service's logs."""

from __future__ import annotations

import io
import json
import time
import warnings
from pathlib import Path

import morecantile
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.warp
from affine import Affine
from fastapi.testclient import TestClient
from rasterio.errors import NotGeoreferencedWarning
from tests.support.data import data_dir_with_samples

from terracube.api.app import create_app
from terracube.settings import Settings

API = "/openeo/1.2"
BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
TMS = morecantile.tms.get("WebMercatorQuad")


def ndvi_graph(extent: dict | None = None, temporal: object = ("2022-06-01", "2022-06-10")
               ) -> dict:
    return {"process_graph": {
        "load": {"process_id": "load_collection", "arguments": {
            "id": "SENTINEL2_L2A", "spatial_extent": extent or BBOX,
            "temporal_extent": list(temporal) if isinstance(temporal, tuple) else temporal,
            "bands": ["B04", "B08"]}},
        "ndvi": {"process_id": "ndvi", "arguments": {"data": {"from_node": "load"},
                                                     "nir": "B08", "red": "B04"}},
        "max": {"process_id": "reduce_dimension", "result": True, "arguments": {
            "data": {"from_node": "ndvi"}, "dimension": "t", "reducer": {"process_graph": {
                "m": {"process_id": "max", "arguments": {"data": {"from_parameter": "data"}},
                      "result": True}}}}}}}


def centre_tile(z: int) -> morecantile.Tile:
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(680200,
                                                                                  5151500)
    return TMS.tile(lon, lat, z)


def rgba(png: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # tiles have no georeference
        with rasterio.MemoryFile(io.BytesIO(png)) as mem, mem.open() as ds:
            return ds.read()


@pytest.fixture(scope="module")
def app(tmp_path_factory, sample_data_dir: Path):
    folder = data_dir_with_samples(tmp_path_factory.mktemp("services") / "data", sample_data_dir)
    app = create_app(Settings(data_dir=folder))
    app.state.users.add("alice", "wonderland")
    app.state.users.add("bob", "builder")
    return app


@pytest.fixture(scope="module")
def client(app) -> TestClient:
    with TestClient(app) as client:
        yield client


def create(client: TestClient, headers: dict, **body) -> str:
    body = {"type": "XYZ", "process": ndvi_graph(), **body}
    r = client.post(f"{API}/services", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.headers["OpenEO-Identifier"]


def tile_url(service_id: str, tile: morecantile.Tile) -> str:
    """The plain tile path: open for a public service, else its owner's Authorization."""
    return f"{API}/services/xyz/{service_id}/tiles/{tile.z}/{tile.x}/{tile.y}.png"


def signed_url(client: TestClient, headers: dict, service_id: str,
               tile: morecantile.Tile) -> str:
    """The tile of the service's own (signed) `url`, which map clients use without a login."""
    template = client.get(f"{API}/services/{service_id}", headers=headers).json()["url"]
    return template.format(z=tile.z, x=tile.x, y=tile.y)


def test_service_types_offer_xyz_with_its_configuration(client) -> None:
    types = client.get(f"{API}/service_types").json()
    assert list(types) == ["XYZ"]
    config = types["XYZ"]["configuration"]
    assert {"minzoom", "maxzoom", "tile_size", "bands", "rescale", "colormap"} <= set(config)
    assert types["XYZ"]["process_parameters"] == []


def test_life_cycle_per_the_api(client, alice) -> None:
    r = client.post(f"{API}/services", headers=alice, json={
        "type": "xyz", "title": "NDVI", "process": ndvi_graph(),
        "configuration": {"rescale": [0, 1], "colormap": "ndvi"}})
    assert r.status_code == 201 and r.content == b""
    sid = r.headers["OpenEO-Identifier"]
    assert r.headers["Location"] == f"http://testserver{API}/services/{sid}"

    doc = client.get(f"{API}/services/{sid}", headers=alice).json()
    assert doc["id"] == sid and doc["type"] == "XYZ" and doc["enabled"] is True
    assert doc["title"] == "NDVI" and doc["configuration"]["colormap"] == "ndvi"
    assert doc["url"].startswith(f"http://testserver{API}/services/xyz/{sid}/tiles/")
    assert doc["url"].endswith("/{z}/{x}/{y}.png")  # expires.signature in between
    template = doc["url"]
    assert doc["process"] == ndvi_graph() and doc["created"].endswith("Z")
    listed = client.get(f"{API}/services", headers=alice).json()
    assert [s["id"] for s in listed["services"]] == [sid] and listed["links"] == []

    r = client.patch(f"{API}/services/{sid}", headers=alice, json={"title": "NDVI max"})
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"{API}/services/{sid}", headers=alice).json()["title"] == "NDVI max"
    assert client.get(f"{API}/services/{sid}/logs", headers=alice).json()["logs"] == []

    r = client.delete(f"{API}/services/{sid}", headers=alice)
    assert r.status_code == 204
    r = client.get(f"{API}/services/{sid}", headers=alice)
    assert r.status_code == 404 and r.json()["code"] == "ServiceNotFound"
    t = centre_tile(14)
    assert client.get(template.format(z=t.z, x=t.x, y=t.y)).status_code == 404
    assert client.get(tile_url(sid, t), headers=alice).status_code == 404


def test_services_belong_to_their_user(client, alice, bob) -> None:
    sid = create(client, alice)
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/logs")):
        r = client.request(method, f"{API}/services/{sid}{path}", headers=bob,
                           json={"title": "mine"} if method == "PATCH" else None)
        assert r.status_code == 404 and r.json()["code"] == "ServiceNotFound", (method, path)
    assert sid not in [s["id"] for s in client.get(f"{API}/services", headers=bob).json()
                       ["services"]]
    assert client.get(f"{API}/services/{sid}", headers=alice).status_code == 200
    assert client.get(f"{API}/services", headers={}).status_code == 401


@pytest.mark.parametrize(("body", "code"), [
    ({"type": "WMTS"}, "ServiceUnsupported"),
    ({"configuration": {"zoom": 3}}, "ServiceConfigUnsupported"),
    ({"configuration": {"tile_size": 300}}, "ServiceConfigInvalid"),
    ({"configuration": {"minzoom": 9, "maxzoom": 3}}, "ServiceConfigInvalid"),
    ({"configuration": {"rescale": [1, 0]}}, "ServiceConfigInvalid"),
    ({"configuration": {"colormap": "rainbow-ish"}}, "ServiceConfigInvalid"),
    ({"configuration": {"bands": ["B04", "B08"]}}, "ServiceConfigInvalid"),
    ({"process": {"process_graph": {"a": {"process_id": "nope", "arguments": {},
                                          "result": True}}}}, "ProcessUnsupported"),
    ({"process": {}}, "ProcessGraphMissing"),
])
def test_bad_services_are_refused(client, alice, body, code) -> None:
    r = client.post(f"{API}/services", headers=alice,
                    json={"type": "XYZ", "process": ndvi_graph(), **body})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == code


def test_tiles_zoom_range_empty_tiles_and_cache_invalidation(client, alice) -> None:
    sid = create(client, alice, configuration={"minzoom": 10, "maxzoom": 16,
                                               "rescale": [0, 1]})
    inside = centre_tile(15)
    r = client.get(signed_url(client, alice, sid, inside))  # map clients send no Authorization
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    first = rgba(r.content)
    assert first.shape == (4, 256, 256)
    assert (first[3] == 255).mean() > 0.3  # the field covers much of the tile
    assert client.get(tile_url(sid, morecantile.Tile(0, 0, 9)), headers=alice).status_code == 404
    assert client.get(tile_url(sid, morecantile.Tile(0, 0, 17)), headers=alice).status_code == 404
    assert client.get(f"{API}/services/xyz/{sid}/tiles/3/9/0.png", headers=alice).status_code == 404

    far = morecantile.Tile(inside.x + 20, inside.y, inside.z)  # outside the loaded box
    empty = rgba(client.get(tile_url(sid, far), headers=alice).content)
    assert (empty == 0).all()

    # A changed configuration is rendered anew (not served from the cache).
    assert client.patch(f"{API}/services/{sid}", headers=alice, json={
        "configuration": {"rescale": [0, 1], "colormap": "greys", "tile_size": 128}}
    ).status_code == 204
    grey = rgba(client.get(tile_url(sid, inside), headers=alice).content)
    assert grey.shape == (4, 128, 128)
    valid = grey[3] == 255
    np.testing.assert_array_equal(grey[0][valid], grey[1][valid])

    # Disabled: its tiles are gone until it is enabled again.
    client.patch(f"{API}/services/{sid}", headers=alice, json={"enabled": False})
    assert client.get(tile_url(sid, inside), headers=alice).status_code == 404
    client.patch(f"{API}/services/{sid}", headers=alice, json={"enabled": True})
    assert client.get(tile_url(sid, inside), headers=alice).status_code == 200


def test_parameters_from_the_query_string_and_logs_of_failed_tiles(client, alice) -> None:
    graph = ndvi_graph(temporal={"from_parameter": "dates"})
    graph["parameters"] = [{"name": "dates", "description": "time range", "schema": {
        "type": "array"}, "default": ["2022-06-01", "2022-06-10"]}]
    sid = create(client, alice, process=graph, configuration={"rescale": [0, 1]})
    tile = centre_tile(15)
    r = client.get(tile_url(sid, tile), headers=alice)
    assert r.status_code == 200, r.text
    default = rgba(r.content)
    url = tile_url(sid, tile) + '?dates=["2022-06-15","2022-06-30"]'
    later = rgba(client.get(url, headers=alice).content)
    assert default.shape == later.shape and not np.array_equal(default, later)

    bad = client.get(tile_url(sid, tile) + '?dates=["2022-07-01","2022-06-01"]',
                     headers=alice)
    assert bad.status_code == 400, bad.text
    logs = client.get(f"{API}/services/{sid}/logs", headers=alice).json()["logs"]
    assert len(logs) == 1 and logs[0]["level"] == "warning"
    assert f"tile {tile.z}/{tile.x}/{tile.y}" in logs[0]["message"]
    assert logs[0]["code"] == bad.json()["code"]
    after = client.get(f"{API}/services/{sid}/logs?offset={logs[0]['id']}", headers=alice)
    assert after.json()["logs"] == []
    assert client.get(f"{API}/services/{sid}/logs?level=error", headers=alice).json()[
        "logs"] == []


def test_tiles_are_their_owners_unless_the_service_is_public(client, alice, bob) -> None:
    sid = create(client, alice, configuration={"rescale": [0, 1]})
    t = centre_tile(15)
    r = client.get(tile_url(sid, t))  # private, no login, no signature
    assert r.status_code == 401 and r.json()["code"] == "AuthenticationRequired", r.text
    assert "public" in r.json()["message"]
    r = client.get(tile_url(sid, t), headers=bob)  # another user: as if it did not exist
    assert r.status_code == 404 and r.json()["code"] == "ServiceNotFound"
    own = client.get(tile_url(sid, t), headers=alice)
    assert own.status_code == 200
    signed = signed_url(client, alice, sid, t)
    r = client.get(signed)  # the service's `url`: no login needed
    assert r.status_code == 200 and r.content == own.content
    token = signed.split("/tiles/")[1].split("/")[0]
    expires, signature = token.split(".")
    forged = signed.replace(token, f"{expires}.{'0' * len(signature)}")
    assert client.get(forged).json()["code"] == "ResultLinkInvalid"
    later = signed.replace(token, f"{int(expires) + 1}.{signature}")
    assert client.get(later).status_code == 403
    other = create(client, bob, configuration={"rescale": [0, 1]})
    assert client.get(signed.replace(sid, other)).status_code == 403  # signed for sid only
    signer = client.app.state.url_signer
    old = int(time.time()) - 10
    stale = signed.replace(token, f"{old}.{signer.sign(sid, 'service', 'xyz-tiles', old)}")
    r = client.get(stale)
    assert r.status_code == 410 and r.json()["code"] == "ResultLinkExpired"

    # Public: the plain URL for everyone; the service itself stays alice's.
    assert client.patch(f"{API}/services/{sid}", headers=alice, json={
        "configuration": {"rescale": [0, 1], "public": True}}).status_code == 204
    doc = client.get(f"{API}/services/{sid}", headers=alice).json()
    assert doc["url"] == f"http://testserver{API}/services/xyz/{sid}/tiles/{{z}}/{{x}}/{{y}}.png"
    r = client.get(tile_url(sid, t))
    assert r.status_code == 200 and r.content == own.content
    assert client.get(tile_url(sid, t), headers=bob).status_code == 200
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", ""), ("GET", "/logs")):
        r = client.request(method, f"{API}/services/{sid}{path}", headers=bob,
                           json={"configuration": {}} if method == "PATCH" else None)
        assert r.status_code == 404, (method, path)
    assert sid not in [s["id"] for s in client.get(f"{API}/services", headers=bob).json()
                       ["services"]]
    # Private again: the plain URL is closed at once (no cached tile leaks).
    client.patch(f"{API}/services/{sid}", headers=alice, json={
        "configuration": {"rescale": [0, 1], "public": False}})
    assert client.get(tile_url(sid, t)).status_code == 401
    r = client.post(f"{API}/services", headers=alice, json={
        "type": "XYZ", "process": ndvi_graph(), "configuration": {"public": "yes"}})
    assert r.status_code == 400 and r.json()["code"] == "ServiceConfigInvalid"


def independent_b04_tile(sample: Path, tile: morecantile.Tile, overview: int | None
                         ) -> np.ndarray:
    """B04 of 2022-06-07 read with rasterio (full resolution, or the file's overview level
    `overview`), warped bilinearly onto the tile, stretched 0..3000 -> 0..255; NaN: none."""
    folder = sample / "samples" / "sentinel2_l2a"
    items = json.loads((folder / "items.json").read_text())["items"]
    (item,) = [i for i in items if i["datetime"].startswith("2022-06-07")]
    path = folder / item["assets"]["B04"]
    with rasterio.open(path, **({} if overview is None else {"overview_level": overview})
                       ) as ds:
        values, transform, nodata = ds.read(1).astype("float32"), ds.transform, ds.nodata
    b = TMS.xy_bounds(tile)
    out = np.full((256, 256), np.nan, dtype="float32")
    rasterio.warp.reproject(
        values, out, src_transform=transform, src_crs="EPSG:32632", src_nodata=nodata,
        dst_transform=Affine((b.right - b.left) / 256, 0, b.left, 0, -(b.top - b.bottom) / 256,
                             b.top),
        dst_crs="EPSG:3857", dst_nodata=np.nan, resampling=rasterio.warp.Resampling.bilinear)
    return np.where(np.isfinite(out), np.round(np.clip(out / 3000, 0, 1) * 255), np.nan)


def test_zoomed_out_tiles_read_the_cog_overviews(client, alice, app) -> None:
    """A service on the whole collection (no spatial_extent: each tile is evaluated for its
    own area): at zoom 12 a tile pixel (~26 m) is more than twice the 10 m of B04, so the
    tile is read from the files' 20 m overview — it equals an independent rendering of that
    overview and not one of the full-resolution pixels; at zoom 14 it is the full resolution."""
    graph = {"process_graph": {"load": {"process_id": "load_collection", "result": True,
                                        "arguments": {
        "id": "SENTINEL2_L2A", "spatial_extent": None, "bands": ["B04"],
        "temporal_extent": ["2022-06-07", "2022-06-08"]}}}}
    sid = create(client, alice, process=graph, configuration={"rescale": [0, 3000]})
    sample = app.state.settings.data_dir
    for z, level in ((12, 0), (14, None)):
        tile = centre_tile(z)
        r = client.get(tile_url(sid, tile), headers=alice)
        assert r.status_code == 200, r.text
        got = rgba(r.content)
        for overview in (0, None):
            expected = independent_b04_tile(sample, tile, overview)
            both = (got[3] == 255) & np.isfinite(expected)
            assert both.sum() > (2000 if z == 12 else 30000)
            close = (np.abs(got[0][both] - expected[both]) <= 1).mean()
            if overview == level:
                assert close > 0.99, (z, overview, close)
            else:
                assert close < 0.97, (z, overview, close)


def test_collections_link_a_preview_layer_that_serves_tiles(client) -> None:
    doc = client.get(f"{API}/collections/SENTINEL2_L2A").json()
    (xyz,) = [lk for lk in doc["links"] if lk["rel"] == "xyz"]
    assert xyz["type"] == "image/png" and xyz["href"].endswith("/{z}/{x}/{y}.png")
    tile = centre_tile(14)
    href = xyz["href"].replace("http://testserver", "")
    r = client.get(href.format(z=tile.z, x=tile.x, y=tile.y))  # public, as the metadata
    assert r.status_code == 200, r.text
    image = rgba(r.content)
    assert (image[3] == 255).mean() > 0.1
    assert not np.array_equal(image[0], image[2])  # RGB (B04, B03, B02), not grey
    # Below the preview's lowest zoom (reading 10 m pixels for a continent) there is none.
    assert client.get(href.format(z=5, x=17, y=11)).status_code == 404
    r = client.get(f"{API}/services/xyz/collections/NOPE/tiles/14/1/1.png")
    assert r.status_code == 404 and r.json()["code"] == "CollectionNotFound"


def test_a_graph_ending_in_save_result_shows_what_it_saves(client, alice) -> None:
    """Editors and the profiles checker write service graphs that end in save_result: the
    map shows the cube it would save, the same tile as without it."""
    plain = ndvi_graph()
    saved = ndvi_graph()
    saved["process_graph"]["max"].pop("result")
    saved["process_graph"]["save"] = {"process_id": "save_result", "result": True, "arguments": {
        "data": {"from_node": "max"}, "format": "PNG"}}
    config = {"rescale": [0, 1]}
    tiles = []
    for process in (plain, saved):
        sid = create(client, alice, process=process, configuration=config)
        r = client.get(tile_url(sid, centre_tile(15)), headers=alice)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text
        tiles.append(rgba(r.content))
    assert (tiles[1][3] == 255).mean() > 0.3
    np.testing.assert_array_equal(tiles[0], tiles[1])


def test_usage_counts_the_tiles_rendered(client, alice) -> None:
    """GET /services/{id} reports `usage` (the API's billing fields): tiles rendered and the
    seconds spent; a tile served from the cache is free."""
    sid = create(client, alice, configuration={"rescale": [0, 1]})
    assert client.get(f"{API}/services/{sid}", headers=alice).json()["usage"] == {
        "duration": {"value": 0, "unit": "seconds"}, "tiles": {"value": 0, "unit": "tiles"}}
    tile = centre_tile(15)
    started = time.perf_counter()
    for _ in range(2):
        assert client.get(tile_url(sid, tile), headers=alice).status_code == 200
    elapsed = time.perf_counter() - started
    doc = client.get(f"{API}/services/{sid}", headers=alice).json()
    assert doc["usage"]["tiles"] == {"value": 1, "unit": "tiles"}
    assert doc["usage"]["duration"]["unit"] == "seconds"
    assert 0 < doc["usage"]["duration"]["value"] <= elapsed
    assert doc["costs"] == 0 and doc["plan"]
    # no budget: null, the API's "no limit" (decision record 0012); nothing else is null
    assert doc["budget"] is None
    assert None not in [v for k, v in doc.items() if k != "budget"]
