"""Vector cubes written as GeoJSON, CSV, GeoParquet and netCDF, read back with other libraries."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from shapely.geometry import Point, box

from terracube.datacube.cube import BANDS, GEOMETRY, TEMPORAL, Dimension
from terracube.datacube.vector import VectorCube
from terracube.results.writers import write_result

TIMES = np.array(["2022-06-02T10:20:00", "2022-06-07T10:20:00"], dtype="datetime64[ns]")


@pytest.fixture
def cube() -> VectorCube:
    values = np.arange(2 * 2 * 3, dtype="float32").reshape(2, 2, 3)
    values[1, 0, 2] = np.nan
    da = xr.DataArray(values, dims=["geometry", "t", "bands"],
                      coords={"geometry": [0, 1], "t": TIMES, "bands": ["B04", "B08", "NDVI"]})
    dims = (Dimension("geometry", GEOMETRY, reference_system=4326), Dimension("t", TEMPORAL),
            Dimension("bands", BANDS))
    return VectorCube((box(11.0, 46.0, 11.1, 46.1), Point(11.2, 46.2)), 4326, da.chunk(),
                      dims, ({"name": "field"}, {"name": "well"}))


def test_geojson_has_one_feature_per_geometry_with_values(cube, tmp_path) -> None:
    (f,) = write_result(cube, "GeoJSON", {}, tmp_path)
    doc = json.loads(f.path.read_text())
    assert f.media_type == "application/geo+json"
    assert [feat["properties"]["name"] for feat in doc["features"]] == ["field", "well"]
    props = doc["features"][0]["properties"]
    assert props["2022-06-07T10:20:00Z_B08"] == 4.0
    assert doc["features"][1]["properties"]["2022-06-02T10:20:00Z_NDVI"] is None
    assert doc["features"][1]["geometry"] == {"type": "Point", "coordinates": [11.2, 46.2]}


def test_csv_is_long_with_band_columns(cube, tmp_path) -> None:
    (f,) = write_result(cube, "CSV", {}, tmp_path)
    table = pd.read_csv(f.path)
    assert list(table.columns) == ["feature_index", "geometry", "t", "B04", "B08", "NDVI"]
    assert len(table) == 4
    row = table[(table.feature_index == 1) & (table.t == "2022-06-07T10:20:00Z")].iloc[0]
    assert (row.B04, row.B08, row.NDVI) == (9.0, 10.0, 11.0)
    assert np.isnan(table.loc[2, "NDVI"])


def test_geoparquet_reads_back_with_geopandas(cube, tmp_path) -> None:
    (f,) = write_result(cube, "Parquet", {}, tmp_path)
    frame = gpd.read_parquet(f.path)
    assert frame.crs.to_epsg() == 4326
    assert len(frame) == 4 and frame.geometry.iloc[3].equals(Point(11.2, 46.2))


def test_netcdf_keeps_dimensions_and_geometries(cube, tmp_path) -> None:
    (f,) = write_result(cube, "netCDF", {}, tmp_path)
    ds = xr.open_dataset(f.path)
    assert set(ds.data_vars) >= {"B04", "B08", "NDVI", "geometry_wkt"}
    assert ds["B08"].dims == ("geometry", "t")
    assert float(ds["B08"][1, 1]) == 10.0
    assert str(ds["geometry_wkt"].values[1]).startswith("POINT")


def test_vector_formats_refuse_other_results(cube, tmp_path) -> None:
    from terracube import errors

    with pytest.raises(errors.OpenEOError):
        write_result([1, 2], "GeoJSON", {}, tmp_path)
