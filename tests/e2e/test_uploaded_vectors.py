"""Issue 11, defect 11: load_uploaded_files reads the vector input formats of /file_formats
(GeoJSON, GeoParquet) as vector cubes — uploaded with the official client, used as the
geometries of aggregate_spatial, compared with shapely/numpy on the sample files."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
from openeo.internal.graph_building import PGNode
from openeo.rest.vectorcube import VectorCube
from pyproj import Transformer
from shapely.geometry import Point, Polygon, shape
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
DAY = ["2022-06-02", "2022-06-03"]
SQUARES = [[(679800, 5151200), (680100, 5151200), (680100, 5151500), (679800, 5151500)],
           [(680200, 5151600), (680500, 5151600), (680500, 5151850), (680200, 5151850)]]


@pytest.fixture(scope="module")
def fields() -> dict:
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": f"field {k}", "crop": k + 1},
         "geometry": {"type": "Polygon",
                      "coordinates": [[list(to_ll.transform(x, y)) for x, y in sq + sq[:1]]]}}
        for k, sq in enumerate(SQUARES)]}


def uploaded(con, path: str, fmt: str) -> VectorCube:
    return VectorCube(PGNode("load_uploaded_files", paths=[path], format=fmt), connection=con)


def expected_means(sample_data_dir: Path, fields: dict) -> list[float]:
    b04 = sample_band(sample_data_dir, DAY[0], "B04", BOX).astype("float64")
    b04[b04 == 0] = np.nan
    xs = BOX["west"] + 5 + 10 * np.arange(96)
    ys = BOX["north"] - 5 - 10 * np.arange(84)
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    means = []
    for feature in fields["features"]:
        poly = Polygon([to_utm.transform(*p) for p in feature["geometry"]["coordinates"][0]])
        inside = np.array([[poly.contains(Point(x, y)) for x in xs] for y in ys])
        means.append(float(np.nanmean(b04[inside])))
    return means


@pytest.mark.parametrize("fmt", ["GeoJSON", "Parquet"])
def test_uploaded_vector_files_are_vector_cubes(con, fields: dict, sample_data_dir: Path,
                                                tmp_path: Path, fmt: str) -> None:
    local = tmp_path / ("fields.geojson" if fmt == "GeoJSON" else "fields.parquet")
    if fmt == "GeoJSON":
        local.write_text(json.dumps(fields))
    else:
        gpd.GeoDataFrame.from_features(fields["features"], crs=4326).to_parquet(local)
    con.upload_file(local, target=f"vectors/{local.name}")

    # the vector cube itself: the file's geometries and properties
    cube = uploaded(con, f"vectors/{local.name}", fmt)
    cube.download(tmp_path / "back.geojson", format="GeoJSON")
    back = json.loads((tmp_path / "back.geojson").read_text())["features"]
    assert len(back) == 2
    for got, sent in zip(back, fields["features"]):
        assert shape(got["geometry"]).equals_exact(shape(sent["geometry"]), 1e-9)
        assert got["properties"]["name"] == sent["properties"]["name"]
        assert got["properties"]["crop"] == sent["properties"]["crop"]

    # ... used as the geometries of aggregate_spatial
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                             bands=["B04"])
    s2.aggregate_spatial(cube, reducer="mean").download(tmp_path / "means.geojson",
                                                        format="GeoJSON")
    stats = json.loads((tmp_path / "means.geojson").read_text())["features"]
    got = [next(v for k, v in f["properties"].items() if k.endswith("_B04")) for f in stats]
    np.testing.assert_allclose(got, expected_means(sample_data_dir, fields), rtol=1e-6)


def test_a_vector_file_read_as_a_raster_is_an_openeo_error(con, fields: dict,
                                                           tmp_path: Path) -> None:
    local = tmp_path / "fields.geojson"
    local.write_text(json.dumps(fields))
    con.upload_file(local, target="vectors/as-raster.geojson")
    cube = con.datacube_from_process("load_uploaded_files", paths=["vectors/as-raster.geojson"],
                                     format="GTiff")
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        cube.download(format="netCDF")
    assert info.value.http_status_code == 400
    assert info.value.code == "FormatUnsuitable"


def test_a_netcdf_of_a_vector_cube_loads_as_a_vector_cube(con, fields: dict, tmp_path: Path
                                                          ) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=DAY,
                             bands=["B04", "B08"])
    means = s2.aggregate_spatial(fields, reducer="mean")
    means.download(tmp_path / "means.nc", format="netCDF")
    means.download(tmp_path / "means.geojson", format="GeoJSON")
    con.upload_file(tmp_path / "means.nc", target="vectors/means.nc")

    again = uploaded(con, "vectors/means.nc", "netCDF")
    again.download(tmp_path / "again.geojson", format="GeoJSON")
    before = json.loads((tmp_path / "means.geojson").read_text())["features"]
    after = json.loads((tmp_path / "again.geojson").read_text())["features"]
    assert len(after) == len(before) == 2
    for a, b in zip(after, before):
        assert shape(a["geometry"]).equals_exact(shape(b["geometry"]), 1e-9)
        values = {k: v for k, v in b["properties"].items() if k.endswith(("_B04", "_B08"))}
        assert len(values) == 2
        for key, value in values.items():
            assert a["properties"][key] == pytest.approx(value, rel=1e-6)
