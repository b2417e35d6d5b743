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


def test_csv_has_cdse_columns(cube, tmp_path) -> None:
    # CDSE (issue 11, defect 4): date, feature_index, one column per band; by date, then feature
    (f,) = write_result(cube, "CSV", {}, tmp_path)
    table = pd.read_csv(f.path)
    assert list(table.columns) == ["date", "feature_index", "B04", "B08", "NDVI"]
    assert list(table.date) == ["2022-06-02T10:20:00Z"] * 2 + ["2022-06-07T10:20:00Z"] * 2
    assert list(table.feature_index) == [0, 1, 0, 1]
    row = table[(table.feature_index == 1) & (table.date == "2022-06-07T10:20:00Z")].iloc[0]
    assert (row.B04, row.B08, row.NDVI) == (9.0, 10.0, 11.0)
    assert np.isnan(table.loc[1, "NDVI"])


def test_csv_of_an_unnamed_band_without_dates(cube, tmp_path) -> None:
    values = cube.values.isel(t=0, bands=0, drop=True)
    plain = VectorCube(cube.geometries, 4326, values, (cube.dimensions[0],), cube.properties)
    (f,) = write_result(plain, "CSV", {}, tmp_path)
    table = pd.read_csv(f.path)
    assert list(table.columns) == ["feature_index", "band_unnamed"]
    assert list(table.band_unnamed) == [0.0, 6.0]


def test_json_is_cdse_timeseries(cube, tmp_path) -> None:
    from openeo.rest.conversions import timeseries_json_to_pandas

    (f,) = write_result(cube, "JSON", {}, tmp_path)
    doc = json.loads(f.path.read_text())
    assert doc == {"2022-06-02T10:20:00Z": [[0.0, 1.0, 2.0], [6.0, 7.0, None]],
                   "2022-06-07T10:20:00Z": [[3.0, 4.0, 5.0], [9.0, 10.0, 11.0]]}
    frame = timeseries_json_to_pandas(doc)
    assert frame.loc["2022-06-07T10:20:00Z", (1, 1)] == 10.0


def test_netcdf_sample_by_feature_writes_a_file_per_feature(cube, tmp_path) -> None:
    files = write_result(cube, "netCDF", {"sample_by_feature": True,
                                          "feature_id_property": "name"}, tmp_path, "openEO")
    assert [f.filename for f in files] == ["openEO_field.nc", "openEO_well.nc"]
    with xr.open_dataset(files[1].path) as ds:
        assert ds.sizes["geometry"] == 1
        np.testing.assert_array_equal(ds["B08"].values[0], [7.0, 10.0])
        assert str(ds["geometry_wkt"].values[0]).startswith("POINT")


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
