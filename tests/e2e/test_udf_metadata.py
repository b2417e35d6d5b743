"""UDFs that change the cube's metadata, declared with `apply_metadata(metadata, context)`
(openeo.udf.udf_signatures): another resolution in apply_neighborhood and on a whole cube,
other band labels in apply_dimension and apply_neighborhood. The client documentation's
example (docs/examples/udf/udf_modify_spatial.py, "UDF's that transform cube metadata") runs
unchanged. All through the official `openeo` client against the shared `terracube serve`;
expected values computed with numpy from the sample files read with rasterio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.windows
import xarray as xr
from tests.support.markers import needs_sandbox
from tests.support.results import download_netcdf

openeo = pytest.importorskip("openeo")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), needs_sandbox]

# 64 x 64 pixels of 10 m on one date (the docs' example needs one date: it drops `t`)
AREA = {"west": 679680, "south": 5150880, "east": 680320, "north": 5151520, "crs": 32632}
DAY = ["2022-06-07", "2022-06-08"]
TWO_DAYS = ["2022-06-01", "2022-06-10"]

# The client documentation's example, unchanged (docs/examples/udf/udf_modify_spatial.py).
MODIFY_SPATIAL = '''import numpy as np
import xarray

from openeo.metadata import CollectionMetadata
from openeo.udf.debug import inspect


def apply_metadata(input_metadata: CollectionMetadata, context: dict) -> CollectionMetadata:
    res= [ d.step / 2.0 for d in input_metadata.spatial_dimensions]
    return input_metadata.resample_spatial(resolution=res)


def fancy_upsample_function(array: np.array, factor: int = 2) -> np.array:
    assert array.ndim == 3
    return array.repeat(factor, axis=-1).repeat(factor, axis=-2)


def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    cubearray: xarray.DataArray = cube.copy() + 60

    # We make prediction and transform numpy array back to datacube

    # Pixel size of the original image
    init_pixel_size_x = cubearray.coords["x"][-1].item() - cubearray.coords["x"][-2].item()
    init_pixel_size_y = cubearray.coords["y"][-1].item() - cubearray.coords["y"][-2].item()

    if cubearray.data.ndim == 4 and cubearray.data.shape[0] == 1:
        cubearray = cubearray[0]
    predicted_array = fancy_upsample_function(cubearray.data, 2)
    inspect(data=predicted_array, message=f"predicted array")
    coord_x = np.linspace(
        start=cube.coords["x"][0].item(),
        stop=cube.coords["x"][-1].item() + init_pixel_size_x,
        num=predicted_array.shape[-2],
        endpoint=False,
    )
    coord_y = np.linspace(
        start=cube.coords["y"].min().item(),
        stop=cube.coords["y"].max().item() + init_pixel_size_y,
        num=predicted_array.shape[-1],
        endpoint=False,
    )
    predicted_cube = xarray.DataArray(
        predicted_array,
        dims=["bands", "x", "y"],
        coords=dict(x=coord_x, y=coord_y),
    )

    return predicted_cube
'''  # noqa: E501 - the example as it is

# Upsampling x 2 by repetition, keeping every dimension by name (several dates, overlap).
UPSAMPLE = '''import xarray
from openeo.metadata import CollectionMetadata

def apply_metadata(metadata: CollectionMetadata, context: dict) -> CollectionMetadata:
    return metadata.resample_spatial(resolution=[d.step / 2 for d in metadata.spatial_dimensions])

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    values = cube.values.repeat(2, axis=cube.get_axis_num("y")).repeat(2, axis=cube.get_axis_num("x"))
    return xarray.DataArray(values, dims=cube.dims)
'''  # noqa: E501

# The same without apply_metadata (CDSE learns the new size from the tiles the UDF returns)
UPSAMPLE_UNDECLARED = UPSAMPLE.split("def apply_metadata")[0] + "def apply_datacube" + \
    UPSAMPLE.split("def apply_datacube")[1]

NDVI_UNDECLARED = '''import xarray

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    red, nir = cube.sel(bands="B04"), cube.sel(bands="B08")
    return ((nir - red) / (nir + red)).expand_dims(bands=["NDVI"])
'''

# 2 x 2 means: half the pixels (resolution 20 m)
COARSEN = '''import xarray

def apply_metadata(metadata, context):
    return metadata.resample_spatial(resolution=20)

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube.coarsen(x=2, y=2).mean()
'''

# The apply_metadata docstring's example: two computed bands, renamed
TWO_BANDS = '''import xarray
from openeo.metadata import CollectionMetadata

def apply_metadata(metadata: CollectionMetadata, context: dict) -> CollectionMetadata:
    return metadata.rename_labels(
        dimension="bands",
        target=["computed_band_1", "computed_band_2"]
    )

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    red, nir = cube.sel(bands="B04"), cube.sel(bands="B08")
    return xarray.concat([nir - red, nir + red], dim="bands")
'''

RENAME_ONLY = '''import xarray

def apply_metadata(metadata, context):
    return metadata.rename_labels(dimension="bands", target=context["names"])

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube * 2
'''

NEW_CRS = '''import xarray

def apply_metadata(metadata, context):
    return metadata.resample_spatial(resolution=20, projection=4326)

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube
'''

WRONG_SIZE = '''import xarray

def apply_metadata(metadata, context):
    return metadata.resample_spatial(resolution=5)

def apply_datacube(cube: xarray.DataArray, context: dict) -> xarray.DataArray:
    return cube
'''

VECTOR = '''def apply_vectorcube(geometries, cube, context):
    return geometries, cube
'''


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def read_bands(sample_data_dir: Path, bands: list[str], days: list[str],
               area: dict = AREA) -> np.ndarray:
    """(t, bands, y, x) of `area` from the sample files, no-data as NaN."""
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    items = sorted((i for i in json.loads((folder / "items.json").read_text())["items"]
                    if days[0] <= i["datetime"][:10] < days[1]), key=lambda i: i["datetime"])
    out = []
    for item in items:
        layers = []
        for band in bands:
            with rasterio.open(folder / item["assets"][band]) as ds:
                window = rasterio.windows.from_bounds(area["west"], area["south"],
                                                      area["east"], area["north"],
                                                      ds.transform)
                values = ds.read(1, window=window.round_offsets().round_lengths())
                values = values.astype("float64")
                if ds.nodata is not None:
                    values[values == ds.nodata] = np.nan
            layers.append(values)
        out.append(np.stack(layers))
    return np.stack(out)


def load(con, bands: list[str], days: list[str] = DAY):
    return con.load_collection("SENTINEL2_L2A", spatial_extent=AREA, temporal_extent=days,
                               bands=bands)


def pixels(size: int, overlap: int = 0) -> dict:
    return {"size": [{"dimension": d, "value": size, "unit": "px"} for d in ("x", "y")],
            "overlap": [{"dimension": d, "value": overlap, "unit": "px"} for d in ("x", "y")]}


def stacked(out: xr.Dataset, bands: list[str]) -> np.ndarray:
    return np.stack([out[b].transpose("t", "y", "x").values for b in bands], axis=1)


def test_the_client_docs_upsampling_example_runs_unchanged(con, sample_data_dir,
                                                           tmp_path) -> None:
    bands = ["B02", "B03", "B04"]
    udf = openeo.UDF(MODIFY_SPATIAL, runtime="Python-Jep")
    out = download_netcdf(load(con, bands).apply_neighborhood(udf, size=pixels(32)["size"],
                                                              overlap=[]), tmp_path)
    # 5 m pixels over the same area: 128 x 128, x and y labels on the new grid
    assert out.sizes["x"] == out.sizes["y"] == 128
    np.testing.assert_allclose(out["x"].values, AREA["west"] + 2.5 + 5 * np.arange(128))
    np.testing.assert_allclose(out["y"].values, AREA["north"] - 2.5 - 5 * np.arange(128))
    raw = read_bands(sample_data_dir, bands, DAY)[0] + 60
    up = raw.repeat(2, axis=-1).repeat(2, axis=-2)
    # The example names its axes (bands, x, y) for an array laid out (bands, y, x): read by
    # their names, as every back-end reads them, each 64 x 64 piece comes back transposed.
    expected = up.copy()
    for r in range(0, 128, 64):
        for c in range(0, 128, 64):
            expected[:, r:r + 64, c:c + 64] = np.swapaxes(up[:, r:r + 64, c:c + 64], 1, 2)
    np.testing.assert_allclose(stacked(out, bands)[0], expected, rtol=1e-6)


def test_the_docs_example_on_an_extent_that_is_no_multiple_of_the_size(con, sample_data_dir,
                                                                         tmp_path) -> None:
    # 70 x 50 pixels: the neighbourhoods at the right and bottom edges are padded to 32 x 32
    # with no-data before the UDF gets them (as CDSE's tiles are), so the example's square
    # assumption holds there too
    area = {**AREA, "east": AREA["west"] + 700, "south": AREA["north"] - 500}
    cube = con.load_collection("SENTINEL2_L2A", spatial_extent=area, temporal_extent=DAY,
                               bands=["B04"])
    out = download_netcdf(cube.apply_neighborhood(openeo.UDF(MODIFY_SPATIAL, runtime="Python-Jep"),
                                                  size=pixels(32)["size"], overlap=[]), tmp_path)
    raw = read_bands(sample_data_dir, ["B04"], DAY, area)[0] + 60
    assert raw.shape == (1, 50, 70)
    padded = np.full((1, 64, 96), np.nan)
    padded[:, :50, :70] = raw
    up = padded.repeat(2, axis=-1).repeat(2, axis=-2)
    expected = up.copy()
    for r in range(0, 128, 64):
        for c in range(0, 192, 64):
            expected[:, r:r + 64, c:c + 64] = np.swapaxes(up[:, r:r + 64, c:c + 64], 1, 2)
    got = out["B04"].transpose("t", "y", "x").values[0]
    assert got.shape == (100, 140)
    np.testing.assert_allclose(got, expected[0, :100, :140], rtol=1e-6)


def test_upsampling_with_overlap_over_several_dates(con, sample_data_dir, tmp_path) -> None:
    p = pixels(24, overlap=4)
    out = download_netcdf(load(con, ["B04", "B08"], TWO_DAYS).apply_neighborhood(
        openeo.UDF(UPSAMPLE, runtime="Python"), size=p["size"], overlap=p["overlap"]),
        tmp_path)
    raw = read_bands(sample_data_dir, ["B04", "B08"], TWO_DAYS)
    assert raw.shape[0] == 2
    got = stacked(out, ["B04", "B08"])
    assert got.shape == (2, 2, 128, 128)
    np.testing.assert_allclose(got, raw.repeat(2, axis=-1).repeat(2, axis=-2), rtol=1e-6)
    assert [str(v)[:10] for v in out["t"].values] == ["2022-06-02", "2022-06-07"]


def test_upsampling_without_apply_metadata_is_learnt_from_the_first_neighbourhood(
        con, sample_data_dir, tmp_path) -> None:
    assert "apply_metadata" not in UPSAMPLE_UNDECLARED
    p = pixels(24, overlap=4)
    out = download_netcdf(load(con, ["B04"], TWO_DAYS).apply_neighborhood(
        openeo.UDF(UPSAMPLE_UNDECLARED, runtime="Python"), size=p["size"],
        overlap=p["overlap"]), tmp_path)
    raw = read_bands(sample_data_dir, ["B04"], TWO_DAYS)
    np.testing.assert_allclose(out["x"].values, AREA["west"] + 2.5 + 5 * np.arange(128))
    np.testing.assert_allclose(stacked(out, ["B04"]), raw.repeat(2, axis=-1).repeat(2, axis=-2),
                               rtol=1e-6)


def test_bands_without_apply_metadata_are_named_by_the_udf(con, sample_data_dir,
                                                            tmp_path) -> None:
    p = pixels(32, overlap=8)
    out = download_netcdf(load(con, ["B04", "B08"]).apply_neighborhood(
        openeo.UDF(NDVI_UNDECLARED, runtime="Python"), size=p["size"], overlap=p["overlap"]),
        tmp_path)
    raw = read_bands(sample_data_dir, ["B04", "B08"], DAY)
    red, nir = raw[:, 0], raw[:, 1]
    np.testing.assert_allclose(out["NDVI"].transpose("t", "y", "x").values,
                               (nir - red) / (nir + red), rtol=1e-5)


def test_run_udf_on_a_cube_at_half_the_resolution(con, sample_data_dir, tmp_path) -> None:
    from openeo.rest.datacube import THIS

    cube = load(con, ["B04"]).process("run_udf", data=THIS, udf=COARSEN, runtime="Python")
    out = download_netcdf(cube, tmp_path)
    assert out.sizes["x"] == out.sizes["y"] == 32
    np.testing.assert_allclose(out["x"].values, AREA["west"] + 10 + 20 * np.arange(32))
    raw = read_bands(sample_data_dir, ["B04"], DAY)[0, 0]
    expected = raw.reshape(32, 2, 32, 2).mean(axis=(1, 3))
    np.testing.assert_allclose(out["B04"].squeeze().transpose("y", "x").values, expected,
                               rtol=1e-6)


def test_apply_dimension_over_bands_names_the_bands_apply_metadata_gives(
        con, sample_data_dir, tmp_path) -> None:
    out = download_netcdf(load(con, ["B04", "B08"]).apply_dimension(
        openeo.UDF(TWO_BANDS, runtime="Python"), dimension="bands"), tmp_path)
    raw = read_bands(sample_data_dir, ["B04", "B08"], DAY)
    red, nir = raw[:, 0], raw[:, 1]
    np.testing.assert_allclose(out["computed_band_1"].transpose("t", "y", "x").values,
                               nir - red, rtol=1e-6)
    np.testing.assert_allclose(out["computed_band_2"].transpose("t", "y", "x").values,
                               nir + red, rtol=1e-6)


def test_apply_neighborhood_renames_bands_as_apply_metadata_says(con, sample_data_dir,
                                                                 tmp_path) -> None:
    udf = openeo.UDF(RENAME_ONLY, runtime="Python", context={"names": ["red2", "nir2"]})
    p = pixels(32, overlap=8)
    out = download_netcdf(load(con, ["B04", "B08"]).apply_neighborhood(
        udf, size=p["size"], overlap=p["overlap"]), tmp_path)
    raw = read_bands(sample_data_dir, ["B04", "B08"], DAY)
    np.testing.assert_allclose(stacked(out, ["red2", "nir2"]), raw * 2, rtol=1e-6)


@pytest.mark.parametrize(("code", "words"), [
    (NEW_CRS, ["apply_metadata", "reference system"]),
    (WRONG_SIZE, ["apply_metadata declares", "x"]),
    (VECTOR, ["apply_vectorcube", "apply_datacube"]),
])
def test_what_cannot_be_followed_is_an_openeo_error(con, code, words) -> None:
    cube = load(con, ["B04"]).apply_neighborhood(openeo.UDF(code, runtime="Python"),
                                                 size=pixels(32)["size"], overlap=[])
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        cube.download(format="netCDF")
    assert info.value.http_status_code == 400
    assert info.value.code == "ProcessParameterInvalid"
    for word in words:
        assert word in info.value.message
