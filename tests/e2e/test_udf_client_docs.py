"""The UDF examples of the openeo client's documentation (docs/udf.rst) not covered elsewhere,
run as written (only the connection, collection extent and dates changed) through the
official client against the shared `terracube serve`: the rescaling UDF in `apply` (inline
and from a file, runtime auto-detected), `inspect` of the chunk's shape in a batch job, the
legacy `apply_dimension(code=..., runtime=...)`, and apply_metadata's inspect calls in the job
log. The Savitzky-Golay, reduce_dimension, apply_neighborhood, execute_local_udf, UdfData and
apply_timeseries examples are in test_udf_dimensions.py, upsampling in test_udf_metadata.py.
Expected values from the sample files read with rasterio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.windows
import xarray as xr
from tests.support.markers import needs_sandbox

openeo = pytest.importorskip("openeo")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sandbox]

AREA = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]
BANDS = ["B02", "B03", "B04"]

# docs/udf.rst, "A first example: apply with an UDF to rescale pixel values" (udf-code.py)
RESCALE = """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    cube.values = 0.0001 * cube.values
    return cube
"""

# docs/udf.rst, "Logging from a UDF"
LOGGING = """
from openeo.udf import inspect
import xarray


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    inspect(data=[cube.shape], message="UDF logging shape of my cube")
    cube.values = 0.0001 * cube.values
    return cube
"""

METADATA_LOG = """
import xarray
from openeo.udf.debug import inspect

def apply_metadata(metadata, context):
    inspect(data=metadata.band_names, message="bands before")
    return metadata.rename_labels(dimension="bands", target=["blue", "green", "red"])

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube
"""

TIMES_TWO = """
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube * 2
"""


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def s2_cube(con):
    return con.load_collection("SENTINEL2_L2A", spatial_extent=AREA, temporal_extent=DAY,
                               bands=BANDS)


def read_bands(sample_data_dir: Path) -> np.ndarray:
    """(bands, y, x) of AREA on DAY from the sample files, no-data as NaN."""
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    (item,) = [i for i in json.loads((folder / "items.json").read_text())["items"]
               if i["datetime"].startswith(DAY[0])]
    layers = []
    for band in BANDS:
        with rasterio.open(folder / item["assets"][band]) as ds:
            window = rasterio.windows.from_bounds(AREA["west"], AREA["south"], AREA["east"],
                                                  AREA["north"], ds.transform)
            values = ds.read(1, window=window.round_offsets().round_lengths()).astype(float)
            values[values == ds.nodata] = np.nan
        layers.append(values)
    return np.stack(layers)


def bands_of(path: Path) -> np.ndarray:
    with xr.open_dataset(path) as ds:
        return np.stack([ds[b].squeeze().transpose("y", "x").values for b in BANDS])


def test_rescaling_udf_in_apply(con, sample_data_dir, tmp_path) -> None:
    udf = openeo.UDF(RESCALE)  # no runtime: the client detects Python
    rescaled = s2_cube(con).apply(process=udf)
    rescaled.download(tmp_path / "apply-udf-scaling.nc")
    np.testing.assert_allclose(bands_of(tmp_path / "apply-udf-scaling.nc"),
                               0.0001 * read_bands(sample_data_dir), rtol=1e-6)


def test_rescaling_udf_from_a_file(con, sample_data_dir, tmp_path) -> None:
    (tmp_path / "udf-code.py").write_text(RESCALE)
    udf = openeo.UDF.from_file(tmp_path / "udf-code.py")
    s2_cube(con).apply(process=udf).download(tmp_path / "out.nc")
    np.testing.assert_allclose(bands_of(tmp_path / "out.nc"),
                               0.0001 * read_bands(sample_data_dir), rtol=1e-6)


def test_legacy_apply_dimension_with_code_and_runtime(con, sample_data_dir, tmp_path) -> None:
    with pytest.warns(Warning):  # the client deprecates it, and still sends it
        cube = s2_cube(con).apply_dimension(code=TIMES_TWO, runtime="Python", dimension="t")
    cube.download(tmp_path / "out.nc")
    np.testing.assert_allclose(bands_of(tmp_path / "out.nc"), 2 * read_bands(sample_data_dir),
                               rtol=1e-6)


def test_inspect_of_the_chunk_shape_is_in_the_job_logs(con, sample_data_dir, tmp_path) -> None:
    cube = s2_cube(con).apply_dimension(process=openeo.UDF(LOGGING), dimension="t")
    job = cube.create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    entries = [e for e in job.logs() if e["message"] == "UDF logging shape of my cube"]
    assert entries, [e["message"] for e in job.logs()]
    # one chunk here: every band, the one date and all 30 x 30 pixels
    assert entries[0]["data"] == [[1, 3, 30, 30]]
    assert entries[0]["level"] == "info" and entries[0]["code"] == "User"
    (result,) = [a for a in job.get_results().get_assets() if a.key.endswith(".nc")]
    path = result.download(tmp_path / "job.nc")
    np.testing.assert_allclose(bands_of(path), 0.0001 * read_bands(sample_data_dir),
                               rtol=1e-6)


def test_apply_metadata_inspect_reaches_the_job_log(con, sample_data_dir, tmp_path) -> None:
    cube = s2_cube(con).apply_dimension(process=openeo.UDF(METADATA_LOG), dimension="bands")
    job = cube.create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    (entry,) = [e for e in job.logs() if e["message"] == "bands before"]
    assert entry["data"] == BANDS
    (result,) = [a for a in job.get_results().get_assets() if a.key.endswith(".nc")]
    with xr.open_dataset(result.download(tmp_path / "job.nc")) as ds:
        renamed = np.stack([ds[b].squeeze().transpose("y", "x").values
                            for b in ("blue", "green", "red")])
    np.testing.assert_allclose(renamed, read_bands(sample_data_dir), rtol=1e-6)


# openeo.udf.udf_signatures.apply_vectorcube, through the client's VectorCube.run_udf
VECTORCUBE = """
import geopandas
import xarray

def apply_vectorcube(geometries: geopandas.GeoDataFrame, cube: xarray.DataArray,
                     context: dict) -> (geopandas.GeoDataFrame, xarray.DataArray):
    geometries["area_m2"] = geometries.area
    return geometries, cube * context["factor"]
"""


def test_apply_vectorcube_on_aggregate_spatial_results(con, sample_data_dir, tmp_path) -> None:
    # two rectangles on the pixel grid: rows/columns 0-9 and 10-29 of AREA
    polygons = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name},
         "geometry": {"type": "Polygon", "coordinates": [[
             [x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
        for name, (x0, y0, x1, y1) in [("a", (680000, 5151400, 680100, 5151500)),
                                       ("b", (680100, 5151200, 680300, 5151400))]],
        "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}}
    means = s2_cube(con).aggregate_spatial(geometries=polygons, reducer="mean")
    doubled = means.run_udf(udf=VECTORCUBE, runtime="Python", context={"factor": 2})
    doubled.download(tmp_path / "out.geojson", format="GeoJSON")
    features = json.loads((tmp_path / "out.geojson").read_text())["features"]
    raw = read_bands(sample_data_dir)
    expected = [np.nanmean(raw[:, :10, :10], axis=(1, 2)),
                np.nanmean(raw[:, 10:, 10:], axis=(1, 2))]
    assert [f["properties"]["name"] for f in features] == ["a", "b"]
    assert [f["properties"]["area_m2"] for f in features] == [10_000, 40_000]
    for feature, values in zip(features, expected, strict=True):
        got = [v for k, v in sorted(feature["properties"].items()) if k.endswith(tuple(BANDS))]
        np.testing.assert_allclose(got, 2 * values, rtol=1e-5)
