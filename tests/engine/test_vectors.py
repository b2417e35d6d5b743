"""Vector cube processes (load_geojson, load_url, vector_buffer, vector_reproject,
vector_to_regular_points, vector_to_random_points, filter_vector).

Expectations are computed independently with shapely and pyproj; load_url reads from an
http.server on the loopback interface started by the test.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box, mapping, shape

from terracube.datacube.vector import VectorCube
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.processes import vectors
from terracube.engine.registry import build_registry
from terracube.errors import OpenEOError
from terracube.results.access import FormatTable
from terracube.results.writers import write_result
from terracube.workspace.access import UserWorkspace

FIELD = box(11.0, 46.0, 11.01, 46.01)  # about 770 m x 1110 m near Bolzano
WELL = Point(11.2, 46.2)
ROAD = LineString([(11.0, 46.3), (11.02, 46.3)])


def feature(geom, **props) -> dict:
    return {"type": "Feature", "geometry": mapping(geom), "properties": props}


def collection(*features) -> dict:
    return {"type": "FeatureCollection", "features": list(features)}


FC = collection(feature(FIELD, name="field", temp=12.5, bands=[1, 2, 3]),
                feature(WELL, name="well", temp=None, bands=[4]),
                feature(ROAD, name="road", bands=[]))


def utm(lon: float, lat: float) -> pyproj.Transformer:
    zone = int((lon + 180) // 6) + 1
    epsg = (32600 if lat >= 0 else 32700) + zone
    return pyproj.Transformer.from_crs(4326, epsg, always_xy=True)


def transform(func, geom):
    return shapely.transform(geom, lambda xy: np.column_stack(func(xy[:, 0], xy[:, 1])))


def to_utm(geom):
    return transform(utm(*geom.centroid.coords[0]).transform, geom)


def run(graph: dict, workspace: Path | None = None) -> tuple[object, Services]:
    services = Services(build_registry(), formats=FormatTable(),
                        workspace=None if workspace is None else UserWorkspace(workspace))
    return Evaluator(services).run(graph), services


# --- load_geojson -----------------------------------------------------------------------------
def test_load_geojson_keeps_geometries_and_properties() -> None:
    cube = vectors.load_geojson(FC)
    assert cube.values is None
    assert [g.equals(e) for g, e in zip(cube.geometries, (FIELD, WELL, ROAD))] == [True] * 3
    assert [p["name"] for p in cube.properties] == ["field", "well", "road"]


def test_load_geojson_single_scalar_property() -> None:
    cube = vectors.load_geojson(FC, ["temp"])
    assert cube.values.dims == ("geometry", "properties")
    assert list(cube.values.properties.values) == ["temp"]
    np.testing.assert_array_equal(cube.values.values[:, 0], [12.5, np.nan, np.nan])
    assert [d.type for d in cube.dimensions] == ["geometry", "other"]


def test_load_geojson_array_property_is_padded_with_nodata() -> None:
    cube = vectors.load_geojson(FC, ["bands"])
    assert list(cube.values.properties.values) == [0, 1, 2]
    np.testing.assert_array_equal(cube.values.values,
                                  [[1, 2, 3], [4, np.nan, np.nan], [np.nan] * 3])


def test_load_geojson_several_properties_label_by_name() -> None:
    cube = vectors.load_geojson(FC, ["name", "temp"])
    assert list(cube.values.properties.values) == ["name", "temp"]
    assert cube.values.values[0].tolist() == ["field", "12.5"]  # one type: text
    assert cube.values.values[2].tolist() == ["road", None]


def test_load_geojson_refuses_geometry_collection() -> None:
    gc = {"type": "GeometryCollection", "geometries": [mapping(WELL)]}
    with pytest.raises(OpenEOError):
        vectors.load_geojson(gc)


@pytest.mark.parametrize("fmt", ["GeoJSON", "CSV", "Parquet"])
@pytest.mark.parametrize("props", [[], ["temp"], ["bands"], ["name", "temp"]])
def test_saved_geojson_cubes_can_be_written(tmp_path, fmt, props) -> None:
    cube = vectors.load_geojson(FC, props)
    (f,) = write_result(cube, fmt, {}, tmp_path)
    if fmt == "GeoJSON":
        doc = json.loads(f.path.read_text())
        assert [feat["properties"]["name"] for feat in doc["features"]] == [
            "field", "well", "road"]
        assert shape(doc["features"][0]["geometry"]).equals(FIELD)
    elif fmt == "Parquet":
        frame = gpd.read_parquet(f.path)
        assert frame.geometry.iloc[0].equals(FIELD)


def test_string_property_values_are_written_to_geojson(tmp_path) -> None:
    cube = vectors.load_geojson(FC, ["name", "temp"])
    (f,) = write_result(cube, "GeoJSON", {}, tmp_path)
    props = json.loads(f.path.read_text())["features"][0]["properties"]
    assert props["name_value"] == "field" and props["temp_value"] == "12.5"


# --- load_url ---------------------------------------------------------------------------------
class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files; /redirect/<url> answers with a redirect to <url>."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", self.path[len("/redirect/"):])
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_root(tmp_path, monkeypatch):
    monkeypatch.setattr(vectors, "ALLOW_PRIVATE_HOSTS", True)
    handler = lambda *a, **kw: Handler(*a, directory=str(tmp_path), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_load_url_reads_geojson_over_http(http_root) -> None:
    root, base = http_root
    (root / "fc.geojson").write_text(json.dumps(FC))
    cube = vectors.load_url(f"{base}/fc.geojson", "geojson")
    assert len(cube) == 3 and cube.geometries[0].equals(FIELD)
    assert cube.properties[1]["name"] == "well"


def test_load_url_reads_geoparquet_over_http(http_root) -> None:
    root, base = http_root
    frame = gpd.GeoDataFrame({"name": ["a", "b"]}, geometry=[FIELD, WELL], crs=4326)
    frame.to_crs(32632).to_parquet(root / "f.parquet")
    cube = vectors.load_url(f"{base}/f.parquet", "Parquet")
    assert cube.crs == 32632
    assert [p["name"] for p in cube.properties] == ["a", "b"]
    assert cube.geometries_in(4326)[1].distance(WELL) < 1e-9


def test_load_url_in_a_process_graph_and_save(http_root, tmp_path) -> None:
    root, base = http_root
    (root / "fc.geojson").write_text(json.dumps(FC))
    graph = {"load": {"process_id": "load_url",
                      "arguments": {"url": f"{base}/fc.geojson", "format": "GeoJSON"}},
             "save": {"process_id": "save_result", "result": True,
                      "arguments": {"data": {"from_node": "load"}, "format": "GeoJSON"}}}
    _, services = run(graph)
    (saved,) = services.saved
    (f,) = write_result(saved.data, saved.format, saved.options, tmp_path / "out")
    assert len(json.loads(f.path.read_text())["features"]) == 3


@pytest.mark.parametrize("url", ["file:///etc/passwd", "/etc/passwd", "ftp://example.org/x",
                                 "http://", 42])
def test_load_url_refuses_non_http_urls(url) -> None:
    with pytest.raises(OpenEOError) as info:
        vectors.load_url(url, "GeoJSON")
    assert info.value.code == "ProcessParameterInvalid"


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/x.geojson", "http://localhost/x",
                                 "http://169.254.169.254/latest/meta-data/",
                                 "https://10.0.0.1/a.json", "http://[::1]/a.json"])
def test_load_url_refuses_the_servers_own_network(url) -> None:
    with pytest.raises(OpenEOError, match="not a public internet address"):
        vectors.load_url(url, "GeoJSON")


def test_load_url_redirects_only_to_http(http_root) -> None:
    root, base = http_root
    (root / "fc.geojson").write_text(json.dumps(FC))
    assert len(vectors.load_url(f"{base}/redirect/{base}/fc.geojson", "GeoJSON")) == 3
    with pytest.raises(OpenEOError, match="Only http|not allowed"):
        vectors.load_url(f"{base}/redirect/file:///etc/passwd", "GeoJSON")


def test_load_url_refuses_other_formats_and_bad_content(http_root) -> None:
    root, base = http_root
    (root / "bad.json").write_text("not json")
    with pytest.raises(OpenEOError) as info:
        vectors.load_url(f"{base}/bad.json", "GTiff")
    assert info.value.code == "FormatUnsuitable"
    with pytest.raises(OpenEOError) as info:
        vectors.load_url(f"{base}/bad.json", "GeoJSON")
    assert info.value.code == "FormatUnsuitable"


def test_load_url_bounded_download_and_http_errors(http_root, monkeypatch) -> None:
    root, base = http_root
    (root / "fc.geojson").write_text(json.dumps(FC))
    with pytest.raises(OpenEOError, match="larger than 100 bytes"):
        vectors._download(f"{base}/fc.geojson", limit=100)
    with pytest.raises(OpenEOError, match="404"):
        vectors.load_url(f"{base}/missing.geojson", "GeoJSON")


# --- vector_buffer ----------------------------------------------------------------------------
def test_buffer_in_metres_on_geographic_geometries() -> None:
    cube = vectors.vector_buffer(vectors.load_geojson(FC), 100)
    for got, original in zip(cube.geometries, (FIELD, WELL, ROAD)):
        assert got.geom_type == "Polygon"
        expected = to_utm(original).buffer(100)
        assert to_utm(got).area == pytest.approx(expected.area, rel=0.01)
        assert got.contains(original)
    # a point's buffer is a circle of radius 100 m
    assert to_utm(cube.geometries[1]).area == pytest.approx(math.pi * 100**2, rel=0.01)
    assert [p["name"] for p in cube.properties] == ["field", "well", "road"]


def test_negative_buffer_shrinks_and_may_empty() -> None:
    cube = vectors.vector_buffer(FC, -100)
    expected = to_utm(FIELD).buffer(-100)
    assert to_utm(cube.geometries[0]).area == pytest.approx(expected.area, rel=0.01)
    assert cube.geometries[1].is_empty and cube.geometries[2].is_empty


def test_buffer_in_projected_metres_is_exact() -> None:
    poly = to_utm(FIELD)
    cube = VectorCube((poly,), 32632)
    assert vectors.vector_buffer(cube, 50).geometries[0].equals(poly.buffer(50))


def test_buffer_refuses_non_metre_units_and_zero() -> None:
    feet = VectorCube((Point(2000000, 500000),), 2264)  # NC State Plane, US survey feet
    with pytest.raises(OpenEOError) as info:
        vectors.vector_buffer(feet, 10)
    assert info.value.code == "UnitMismatch"
    with pytest.raises(OpenEOError):
        vectors.vector_buffer(FC, 0)


# --- vector_reproject -------------------------------------------------------------------------
def test_reproject_to_epsg_and_wkt() -> None:
    cube = vectors.load_geojson(FC, ["temp"])
    out = vectors.vector_reproject(cube, 32632)
    assert out.crs == 32632
    assert out.dimensions[0].reference_system == 32632
    expected = transform(pyproj.Transformer.from_crs(4326, 32632, always_xy=True).transform,
                         FIELD)
    assert out.geometries[0].equals_exact(expected, 1e-6)
    assert out.values is cube.values
    wkt = pyproj.CRS(3857).to_wkt()
    out = vectors.vector_reproject(FC, wkt, "geometry")
    assert pyproj.CRS(out.crs) == pyproj.CRS(3857)


def test_reproject_unknown_dimension() -> None:
    with pytest.raises(OpenEOError) as info:
        vectors.vector_reproject(FC, 3857, "geometries")
    assert info.value.code == "DimensionNotAvailable"


# --- vector_to_regular_points -----------------------------------------------------------------
def test_regular_points_in_projected_polygon() -> None:
    poly = Polygon([(0, 0), (100, 0), (100, 100), (0, 0)])  # triangle below the diagonal
    cube = VectorCube((poly, LineString([(0, 0), (25, 0)]), Point(5, 5)), 32632)
    out = vectors.vector_to_regular_points(cube, 20)
    xs = np.arange(10, 100, 20)
    ys = np.arange(90, 0, -20)
    expected = [(x, y) for y in ys for x in xs if poly.contains(Point(x, y))]
    assert [(p.x, p.y) for p in out.geometries[0].geoms] == expected
    assert [(p.x, p.y) for p in out.geometries[1].geoms] == [(0, 0), (20, 0)]
    assert out.geometries[2].equals(MultiPoint([(5, 5)]))


def test_regular_points_fallback_and_ungrouped() -> None:
    tiny = box(0, 0, 1, 1)
    cube = VectorCube((tiny.buffer(0), box(0, 0, 40, 20)), 32632,
                      properties=({"id": "a"}, {"id": "b"}))
    out = vectors.vector_to_regular_points(cube, 1000, group=True)
    assert out.geometries[0].geoms[0].coords[0] == tuple(shapely.get_coordinates(tiny)[0])
    ungrouped = vectors.vector_to_regular_points(cube, 10, group=False)
    assert [g.geom_type for g in ungrouped.geometries] == ["Point"] * 9
    assert [p["id"] for p in ungrouped.properties] == ["a"] + ["b"] * 8


def test_regular_points_on_geographic_geometries_are_spaced_in_metres() -> None:
    out = vectors.vector_to_regular_points(FC, 200)
    pts = to_utm(out.geometries[0])
    expected = math.floor(to_utm(FIELD).area / 200**2)
    assert abs(len(pts.geoms) - expected) <= 10
    assert all(FIELD.contains(p) for p in out.geometries[0].geoms)
    road = [to_utm(Point(p.coords[0])) for p in out.geometries[2].geoms]
    length = to_utm(ROAD).length
    assert len(road) == int(length // 200) + 1
    assert road[0].distance(to_utm(Point(ROAD.coords[0]))) < 1e-3
    assert road[1].distance(road[0]) == pytest.approx(200, rel=0.01)


# --- vector_to_random_points ------------------------------------------------------------------
def test_random_points_are_inside_and_deterministic() -> None:
    a = vectors.vector_to_random_points(FC, geometry_count=5, seed=42)
    b = vectors.vector_to_random_points(FC, geometry_count=5, seed=42)
    assert [g.wkt for g in a.geometries] == [g.wkt for g in b.geometries]
    assert len(a.geometries[0].geoms) == 5 and all(FIELD.contains(p)
                                                   for p in a.geometries[0].geoms)
    assert len(a.geometries[1].geoms) == 1  # a single point can be selected only once
    assert len(a.geometries[2].geoms) == 5
    assert all(ROAD.distance(p) < 1e-9 for p in a.geometries[2].geoms)
    c = vectors.vector_to_random_points(FC, geometry_count=5, seed=7)
    assert c.geometries[0].wkt != a.geometries[0].wkt


def test_random_points_counts() -> None:
    default = vectors.vector_to_random_points(FC, seed=1)
    assert [len(g.geoms) for g in default.geometries] == [1, 1, 1]
    total = vectors.vector_to_random_points(FC, total_count=8, seed=1, group=False)
    # shared evenly; the single point can be sampled once, its share goes to the others
    assert [p["name"] for p in total.properties] == ["field"] * 4 + ["well"] + ["road"] * 3
    capped = vectors.vector_to_random_points(FC, geometry_count=2, total_count=9, seed=1)
    assert [len(g.geoms) for g in capped.geometries] == [2, 1, 2]
    with pytest.raises(OpenEOError) as info:
        vectors.vector_to_random_points(FC, total_count=2)
    assert info.value.code == "CountMismatch"


# --- filter_vector ----------------------------------------------------------------------------
@pytest.mark.parametrize("relation", vectors.RELATIONS)
def test_filter_vector_matches_shapely(relation) -> None:
    base = box(10.99, 45.99, 11.005, 46.02)
    cube = vectors.load_geojson(FC, ["temp"])
    out = vectors.filter_vector(cube, {"type": "Polygon",
                                       "coordinates": mapping(base)["coordinates"]}, relation)
    expected = [i for i, g in enumerate((FIELD, WELL, ROAD))
                if getattr(shapely, relation)(base, g)]
    assert [p["name"] for p in out.properties] == [["field", "well", "road"][i]
                                                   for i in expected]
    assert out.values.sizes["geometry"] == len(expected)
    np.testing.assert_array_equal(out.values.values[:, 0],
                                  cube.values.values[expected, 0])


def test_filter_vector_with_reprojected_base_and_save(tmp_path) -> None:
    base = vectors.vector_reproject(vectors.vector_buffer({"type": "Point", "coordinates": [
        11.2, 46.2]}, 1000), 32632)
    out = vectors.filter_vector(FC, base, "contains")
    assert [p["name"] for p in out.properties] == ["well"]
    (f,) = write_result(out, "GeoJSON", {}, tmp_path)
    assert json.loads(f.path.read_text())["features"][0]["properties"]["name"] == "well"


def test_processes_chain_in_a_graph(tmp_path) -> None:
    graph = {
        "load": {"process_id": "load_geojson", "arguments": {"data": FC,
                                                             "properties": ["temp"]}},
        "buffer": {"process_id": "vector_buffer",
                   "arguments": {"geometries": {"from_node": "load"}, "distance": 50}},
        "utm": {"process_id": "vector_reproject",
                "arguments": {"data": {"from_node": "buffer"}, "projection": 32632}},
        "points": {"process_id": "vector_to_random_points",
                   "arguments": {"data": {"from_node": "utm"}, "geometry_count": 3,
                                 "seed": 3, "group": False}},
        "save": {"process_id": "save_result", "result": True,
                 "arguments": {"data": {"from_node": "points"}, "format": "GeoJSON"}},
    }
    _, services = run(graph)
    (saved,) = services.saved
    assert len(saved.data.geometries) == 9 and saved.data.crs == 32632
    (f,) = write_result(saved.data, "GeoJSON", {}, tmp_path)
    doc = json.loads(f.path.read_text())
    assert len(doc["features"]) == 9
    assert doc["features"][0]["properties"]["temp_value"] == 12.5


def test_netcdf_of_property_values(tmp_path) -> None:
    import xarray as xr

    cube = vectors.load_geojson(FC, ["bands"])
    (f,) = write_result(cube, "netCDF", {}, tmp_path)
    with xr.open_dataset(f.path) as ds:
        np.testing.assert_array_equal(ds["value"].values[0], [1, 2, 3])
        assert shapely.from_wkt(str(ds["geometry_wkt"].values[1])).equals(WELL)
