"""Issue 12, semantics: a UDF over a dimension gets that dimension whole, one call per spatial
block; neighbourhoods (with their overlap) and polygons reach it in one call; shape changes of
the processed dimension. All through the official `openeo` client against a real
`terracube serve` whose UDF blocks are 16 pixels a side (TERRACUBE_UDF_BLOCK_SIZE), values
computed independently from the sample files with rasterio, xarray and scipy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.signal import savgol_filter
from tests.support.data import data_dir_with_samples, sample_series
from tests.support.markers import needs_sandbox
from tests.support.processes import ServerProcess, clean_env
from tests.support.results import download_netcdf

openeo = pytest.importorskip("openeo")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sandbox]

# 30 x 30 pixels of 10 m: blocks of 16 + 14 pixels a side (4 blocks); 12 dates
SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
DATES = ["2022-04-01", "2022-06-01"]
BLOCK = 16

# The client documentation's example (docs/examples/udf/smooth_savitzky_golay.py), unchanged.
SAVGOL = '''import xarray
from scipy.signal import savgol_filter

from openeo.udf import XarrayDataCube


def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    """
    Apply Savitzky-Golay smoothing to a timeseries datacube.
    This UDF preserves dimensionality, and assumes an input
    datacube with a temporal dimension 't' as input.
    """
    array: xarray.DataArray = cube.get_array()
    filled = array.interpolate_na(dim="t")
    smoothed_array = savgol_filter(filled.values, 5, 2, axis=0)
    return XarrayDataCube(array=xarray.DataArray(smoothed_array, dims=array.dims, coords=array.coords))
'''  # noqa: E501 - the example's own line

# every pixel gets the shape of the block the UDF was called with: t * 10^6 + y * 10^3 + x
SHAPE = '''import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    s = cube.sizes
    return cube * 0 + s.get("t", 0) * 1_000_000 + s["y"] * 1000 + s["x"]
'''

MAX_OVER_T = '''import numpy as np
import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return xarray.apply_ufunc(np.nanmax, cube, input_core_dims=[["t"]], kwargs={"axis": -1})
'''

SEASONS = '''import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    # 12 dates -> 4 "seasons" of 3 dates each (their mean)
    return cube.coarsen(t=3).mean()
'''

NDVI = '''import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    red, nir = cube.sel(bands="B04"), cube.sel(bands="B08")
    return ((nir - red) / (nir + red)).expand_dims(bands=["NDVI"])
'''


@pytest.fixture(scope="module")
def server(sample_data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    data_dir = data_dir_with_samples(tmp_path_factory.mktemp("udf-blocks"), sample_data_dir)
    srv = ServerProcess(data_dir, {"TERRACUBE_UDF_BLOCK_SIZE": str(BLOCK),
                                   "TERRACUBE_WORKERS": "0"})
    yield srv
    srv.stop()


def read_band(sample_data_dir: Path, band: str) -> xr.DataArray:
    """The band over SMALL and DATES from the sample files (no-data as NaN), dims (t, y, x)."""
    series = sample_series(sample_data_dir, band, SMALL, *DATES, times=True)
    return xr.DataArray(np.stack(list(series.values())), dims=["t", "y", "x"],
                        coords={"t": [np.datetime64(time) for time in series]})


def load(con, bands: list[str]):
    return con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=DATES,
                               bands=bands)


def test_savitzky_golay_example_of_the_client_docs(con, sample_data_dir, tmp_path) -> None:
    b04 = load(con, ["B04"])
    # gaps for interpolate_na, as the docs' masked EVI has (none on the first and last date:
    # savgol_filter refuses the NaN that interpolate_na leaves at the ends)
    masked = b04.mask(b04 > 1800)
    out = download_netcdf(
        masked.apply_dimension(openeo.UDF(SAVGOL, runtime="Python"), dimension="t"), tmp_path)
    raw = read_band(sample_data_dir, "B04")
    raw = raw.where(raw <= 1800)
    assert raw.sizes["t"] == 12 and 0.05 < float(raw.isnull().mean()) < 0.6
    expected = savgol_filter(raw.interpolate_na(dim="t").values, 5, 2, axis=0)
    got = out["B04"].transpose("t", "y", "x").values
    assert got.shape == expected.shape == (12, 30, 30)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)


def test_udf_over_t_is_called_per_spatial_block_with_t_whole(con, tmp_path) -> None:
    out = download_netcdf(load(con, ["B04"]).apply_dimension(
        openeo.UDF(SHAPE, runtime="Python"), dimension="t"), tmp_path)
    got = out["B04"].transpose("t", "y", "x").values
    # block sizes along y and x: 16 then 14; every call had all 12 dates
    sizes = np.array([BLOCK] * BLOCK + [30 - BLOCK] * (30 - BLOCK))
    expected = 12_000_000 + sizes[:, None] * 1000 + sizes[None, :]
    for t in range(12):
        np.testing.assert_array_equal(got[t], expected)


def test_reduce_dimension_with_apply_ufunc_over_t(con, sample_data_dir, tmp_path) -> None:
    out = download_netcdf(load(con, ["B04"]).reduce_dimension(
        dimension="t", reducer=openeo.UDF(MAX_OVER_T, runtime="Python")), tmp_path)
    raw = read_band(sample_data_dir, "B04")
    got = np.squeeze(out["B04"].values)
    np.testing.assert_allclose(got, np.nanmax(raw.values, axis=0), rtol=1e-6)


def test_apply_neighborhood_gives_the_neighbourhood_with_its_overlap(con, tmp_path) -> None:
    cube = load(con, ["B04"]).apply_neighborhood(
        openeo.UDF(SHAPE, runtime="Python"),
        size=[{"dimension": "x", "value": 10, "unit": "px"},
              {"dimension": "y", "value": 10, "unit": "px"}],
        overlap=[{"dimension": "x", "value": 4, "unit": "px"},
                 {"dimension": "y", "value": 4, "unit": "px"}])
    got = download_netcdf(cube, tmp_path)["B04"].values
    # 10 pixels plus 4 of overlap on each side, in one call, all dates
    assert np.all(got == 12_000_000 + 18 * 1000 + 18)


def test_a_neighbourhood_larger_than_the_cube_is_one_call(con, tmp_path) -> None:
    cube = load(con, ["B04"]).apply_neighborhood(
        openeo.UDF(SHAPE, runtime="Python"),
        size=[{"dimension": "x", "value": 64, "unit": "px"},
              {"dimension": "y", "value": 64, "unit": "px"}], overlap=[])
    got = download_netcdf(cube, tmp_path)["B04"].values
    # not blocks of 16: one call, at the size asked for (the rest no-data), as on CDSE
    assert got.shape[-2:] == (30, 30) and np.all(got == 12_000_000 + 64 * 1000 + 64)


def test_apply_polygon_gives_each_polygon_in_one_call(con, tmp_path) -> None:
    # two polygons: 10 x 10 pixels and 20 x 20 pixels (larger than a block of 16)
    polygons = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [[
            [x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}
        for x0, y0, x1, y1 in [(680000, 5151400, 680100, 5151500),
                               (680100, 5151200, 680300, 5151400)]],
        "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}}
    cube = load(con, ["B04"]).apply_polygon(
        geometries=polygons, process=openeo.UDF(SHAPE, runtime="Python"))
    got = download_netcdf(cube, tmp_path)["B04"].transpose("t", "y", "x").values
    assert np.all(got[:, :10, :10] == 12_000_000 + 10 * 1000 + 10)
    assert np.all(got[:, 10:, 10:] == 12_000_000 + 20 * 1000 + 20)


def test_apply_polygon_returning_another_number_of_bands(con, sample_data_dir,
                                                         tmp_path) -> None:
    polygon = {"type": "Polygon", "coordinates": [[
        [680100, 5151200], [680300, 5151200], [680300, 5151400], [680100, 5151400],
        [680100, 5151200]]], "crs": {"type": "name", "properties": {"name": "EPSG:32632"}}}
    cube = load(con, ["B04", "B08"]).apply_polygon(
        geometries=polygon, process=openeo.UDF(NDVI, runtime="Python"))
    out = download_netcdf(cube, tmp_path)
    assert "NDVI" in out.data_vars and "B04" not in out.data_vars  # the UDF's band name
    red, nir = read_band(sample_data_dir, "B04"), read_band(sample_data_dir, "B08")
    expected = ((nir - red) / (nir + red)).values.copy()
    expected[:, :10, :] = np.nan  # outside the polygon: no-data
    expected[:, :, :10] = np.nan
    np.testing.assert_allclose(out["NDVI"].transpose("t", "y", "x").values, expected,
                               rtol=1e-5)


def test_apply_dimension_12_dates_into_4_seasons(con, sample_data_dir, tmp_path) -> None:
    cube = load(con, ["B04"]).apply_dimension(
        openeo.UDF(SEASONS, runtime="Python"), dimension="t", target_dimension="season")
    target = tmp_path / "seasons.json"
    cube.download(target, format="JSON")
    result = json.loads(target.read_text())
    # the new dimension: labels 0..3 as the process (and the client's docstring) say
    assert result["order"] == ["season", "bands", "y", "x"]
    assert result["dimensions"]["season"] == {"type": "other", "values": [0, 1, 2, 3]}
    raw = read_band(sample_data_dir, "B04")
    got = np.array(result["data"], dtype=float)[:, 0]
    np.testing.assert_allclose(got, raw.coarsen(t=3).mean().values, rtol=1e-5)


def test_apply_dimension_2_bands_into_1(con, sample_data_dir, tmp_path) -> None:
    out = download_netcdf(load(con, ["B04", "B08"]).apply_dimension(
        openeo.UDF(NDVI, runtime="Python"), dimension="bands"), tmp_path)
    red, nir = read_band(sample_data_dir, "B04"), read_band(sample_data_dir, "B08")
    (name,) = [v for v in out.data_vars if v != "crs" and out[v].ndim == 3]
    assert name == "0"  # the new band is labelled 0, as the processes (and the client) say
    np.testing.assert_allclose(out[name].transpose("t", "y", "x").values,
                               ((nir - red) / (nir + red)).values, rtol=1e-5)


# --- the local harnesses ----------------------------------------------------------------------
def test_execute_local_udf_of_the_client_gives_the_servers_values(con, tmp_path) -> None:
    from openeo.udf.run_code import execute_local_udf

    b04 = load(con, ["B04", "B08"])
    masked = b04.mask(b04.band("B04") > 1800)
    masked.download(tmp_path / "input.nc", format="netCDF")
    on_server = download_netcdf(masked.apply_dimension(openeo.UDF(SAVGOL, runtime="Python"),
                                                       dimension="t"), tmp_path)
    local = execute_local_udf(SAVGOL, tmp_path / "input.nc", fmt="netcdf")
    array = local.get_datacube_list()[0].get_array()
    for band in ("B04", "B08"):
        np.testing.assert_allclose(on_server[band].transpose("t", "y", "x").values,
                                   array.sel(bands=band).transpose("t", "y", "x").values,
                                   rtol=1e-5, atol=1e-3)


def test_terracube_udf_run_prints_shape_and_values(sample_data_dir, tmp_path) -> None:
    data_dir = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    udf = tmp_path / "scale.py"
    udf.write_text("import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context: dict)"
                   " -> xarray.DataArray:\n    return cube * context['factor']\n")
    out = tmp_path / "result.nc"
    bbox = f"{SMALL['west']},{SMALL['south']},{SMALL['east']},{SMALL['north']}"
    done = subprocess.run(
        [sys.executable, "-m", "terracube.cli", "udf", "run", str(udf), "--collection",
         "SENTINEL2_L2A", "--bbox", bbox, "--crs", "32632", "--dates", "/".join(DATES),
         "--bands", "B04", "--dimension", "t", "--context", '{"factor": 3}',
         "--output", str(out), "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=240, env=clean_env())
    assert done.returncode == 0, done.stderr
    raw = read_band(sample_data_dir, "B04") * 3
    assert "shape: (12, 1, 30, 30)" in done.stdout
    assert f"max {float(raw.max()):.6g}" in done.stdout
    with xr.open_dataset(out) as ds:
        np.testing.assert_allclose(ds["result"].isel(bands=0).values, raw.values, rtol=1e-6)

    udf.write_text("def apply_datacube(cube, context):\n    return cube.missing_method()\n")
    done = subprocess.run(
        [sys.executable, "-m", "terracube.cli", "udf", "run", str(udf), "--collection",
         "SENTINEL2_L2A", "--bbox", bbox, "--crs", "32632", "--dates", "/".join(DATES),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=240, env=clean_env())
    assert done.returncode == 1
    assert "AttributeError" in done.stderr and "line 2" in done.stderr


# --- the signatures of openeo.udf, context and errors -------------------------------------------
TIMESERIES = '''import pandas as pd

def apply_timeseries(series: pd.Series, context: dict) -> pd.Series:
    return series.interpolate(limit_direction="both") * context["factor"]
'''

UDF_DATA = '''from openeo.udf import UdfData, XarrayDataCube

def scale(data: UdfData):
    cube = data.get_datacube_list()[0].get_array()
    data.set_datacube_list([XarrayDataCube(cube + data.user_context["offset"])])
'''


def test_apply_timeseries_with_context(con, sample_data_dir, tmp_path) -> None:
    b04 = load(con, ["B04"])
    out = download_netcdf(b04.mask(b04 > 1800).apply_dimension(
        openeo.UDF(TIMESERIES, runtime="Python", context={"factor": 2}), dimension="t"),
        tmp_path)
    raw = read_band(sample_data_dir, "B04")
    raw = raw.where(raw <= 1800)
    expected = np.apply_along_axis(
        lambda s: pd.Series(s).interpolate(limit_direction="both").to_numpy() * 2, 0,
        raw.values)
    np.testing.assert_allclose(out["B04"].transpose("t", "y", "x").values, expected, rtol=1e-5)


def test_udf_data_signature_with_context(con, sample_data_dir, tmp_path) -> None:
    out = download_netcdf(load(con, ["B04"]).reduce_dimension(
        dimension="t", reducer=openeo.UDF(MAX_OVER_T, runtime="Python")).apply(
        openeo.UDF(UDF_DATA, runtime="Python", context={"offset": 5})), tmp_path)
    raw = read_band(sample_data_dir, "B04")
    np.testing.assert_allclose(np.squeeze(out["B04"].values), np.nanmax(raw.values, axis=0) + 5,
                               rtol=1e-6)


def test_errors_in_a_block_name_the_node_and_the_udfs_lines(con, tmp_path) -> None:
    code = "import xarray\n\ndef apply_datacube(cube: xarray.DataArray, context: dict):\n" \
           "    if cube.sizes['x'] < 16:\n        raise ValueError('a narrow block')\n" \
           "    return cube\n"
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        download_netcdf(load(con, ["B04"]).apply_dimension(openeo.UDF(code, runtime="Python"),
                                                           dimension="t"), tmp_path)
    message = info.value.message
    assert info.value.code == "ProcessParameterInvalid"
    assert "node 'runudf1'" in message and "argument 'udf'" in message
    assert "ValueError: a narrow block" in message and "line 5, in apply_datacube" in message
    assert "terracube" not in message and "site-packages" not in message
