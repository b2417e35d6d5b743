"""More CDSE notebook samples (eu-cdse/notebook-samples, openeo/, from the repository's
history): ForestFire, LandslidesNDVI, Load_Collection_v1 and NDVI_Timeseries_UDF_Smoothing, each
adapted only in URL, login, extent and dates to the Sentinel-2 sample, run through the official
client against the shared server, values computed independently with numpy/scipy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import scipy.ndimage
import scipy.signal
import shapely.geometry
import xarray as xr
from pyproj import Transformer
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
from openeo.rest.conversions import timeseries_json_to_pandas  # noqa: E402

pytestmark = pytest.mark.e2e

BOX = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}


@pytest.fixture(scope="module")
def connection(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


def series(sample_data_dir: Path, band: str, start: str, end: str) -> np.ndarray:
    """(t, y, x) of `band` on BOX on the 10 m grid (20 m bands repeated, as loaded)."""
    values = np.stack(list(sample_series(sample_data_dir, band, BOX, start, end).values()))
    if values.shape[1] != 30:
        values = values.repeat(2, axis=1).repeat(2, axis=2)
    return values


def gaussian_kernel() -> np.ndarray:
    g = scipy.signal.windows.gaussian(11, std=1.6)
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def cloudmask(dc, data, reducer: str = "first"):
    """ForestFire.ipynb's cloudmask, as written there."""
    scl = dc.band("SCL")
    mask = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
    mask = mask.apply_kernel(gaussian_kernel())
    mask = mask > 0.1
    mask = mask.resample_cube_spatial(data)
    data_masked = data.mask(mask)
    return data_masked.reduce_dimension(reducer=reducer, dimension="t")


def expected_cloudmask(sample_data_dir: Path, index: np.ndarray, start: str, end: str,
                       reducer: str) -> np.ndarray:
    """The same with numpy: the cloud classes dilated by the kernel (zero outside the
    extent), the index masked, the first or last valid value of each pixel."""
    scl = series(sample_data_dir, "SCL", start, end)
    cloudy = np.isin(scl, (3, 8, 9, 10)).astype(float)
    dilated = np.stack([scipy.ndimage.correlate(c, gaussian_kernel(), mode="constant", cval=0)
                        for c in cloudy]) > 0.1
    masked = np.where(dilated, np.nan, index)
    order = range(len(masked)) if reducer == "first" else reversed(range(len(masked)))
    out = np.full(masked.shape[1:], np.nan)
    for i in order:
        out = np.where(np.isnan(out), masked[i], out)
    return out


def ndvi(sample_data_dir: Path, start: str, end: str) -> np.ndarray:
    red, nir = (series(sample_data_dir, b, start, end) for b in ("B04", "B08"))
    return (nir - red) / (nir + red)


def nbr(sample_data_dir: Path, start: str, end: str) -> np.ndarray:
    nir, swir = (series(sample_data_dir, b, start, end) for b in ("B08", "B12"))
    return (nir - swir) / (nir + swir)


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        assert ds.count == 1
        return ds.read(1).astype("float64")


PRE = ["2022-05-03", "2022-06-03"]
NRT = ["2022-06-03", "2022-06-13"]
MOSAIC = ["2022-06-13", "2022-07-13"]


def test_forest_fire_cloud_free_ndvi_and_nbr_differences(connection, sample_data_dir: Path,
                                                         tmp_path: Path) -> None:
    """ForestFire.ipynb: a cloud mask from SCL dilated by apply_kernel (an 11x11 Gaussian),
    thresholded, resample_cube_spatial onto the index, mask, reduce "last"/"first" over t; NDVI
    and NBR (band math) differences of two such mosaics, each as a batch job to GeoTIFF."""
    bands = ["B04", "B08", "B12", "SCL"]
    s2pre = connection.load_collection("SENTINEL2_L2A", temporal_extent=PRE,
                                       spatial_extent=BOX, bands=bands)
    ndvi_pre = cloudmask(s2pre, s2pre.ndvi(), reducer="last")
    ndvi_pre.execute_batch(title="Pre-NDVI", outputfile=tmp_path / "NDVI.tiff")
    expected_pre = expected_cloudmask(sample_data_dir, ndvi(sample_data_dir, *PRE), *PRE, "last")
    np.testing.assert_allclose(read(tmp_path / "NDVI.tiff"), expected_pre, rtol=1e-5,
                               equal_nan=True)

    s2nrt = connection.load_collection("SENTINEL2_L2A", temporal_extent=NRT,
                                       spatial_extent=BOX, bands=bands)
    ndvi_nrt = cloudmask(s2nrt, s2nrt.ndvi())
    fire_nrt = ndvi_pre - ndvi_nrt
    fire_nrt.execute_batch(title="NRT-NDVI", outputfile=tmp_path / "NRT_Fire.tiff")
    expected_nrt = expected_cloudmask(sample_data_dir, ndvi(sample_data_dir, *NRT), *NRT, "first")
    np.testing.assert_allclose(read(tmp_path / "NRT_Fire.tiff"), expected_pre - expected_nrt,
                               rtol=1e-5, atol=1e-6, equal_nan=True)

    s2mosiac = connection.load_collection("SENTINEL2_L2A", temporal_extent=MOSAIC,
                                          spatial_extent=BOX, bands=bands)
    nbr_pre = (s2pre.band("B08") - s2pre.band("B12")) / (s2pre.band("B08") + s2pre.band("B12"))
    nbr_pre = cloudmask(s2pre, nbr_pre, reducer="last")
    nbr_mosiac = ((s2mosiac.band("B08") - s2mosiac.band("B12"))
                  / (s2mosiac.band("B08") + s2mosiac.band("B12")))
    nbr_mosiac = cloudmask(s2mosiac, nbr_mosiac, reducer="first")
    fire_nrt_mosiac = nbr_pre - nbr_mosiac
    fire_nrt_mosiac.execute_batch(title="Mosiac-NBR", outputfile=tmp_path / "Mosiac_NBR_Fire.tiff")
    expected = (expected_cloudmask(sample_data_dir, nbr(sample_data_dir, *PRE), *PRE, "last")
                - expected_cloudmask(sample_data_dir, nbr(sample_data_dir, *MOSAIC), *MOSAIC,
                                     "first"))
    result = read(tmp_path / "Mosiac_NBR_Fire.tiff")
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isfinite(result).any()


def test_landslides_ndvi_difference_of_mean_times(connection, sample_data_dir: Path,
                                                  tmp_path: Path) -> None:
    """LandslidesNDVI.ipynb: mean_time of the NDVI before and after, their difference as a
    batch job to GTiff, thresholded with numpy as the notebook does."""
    pre, post = ["2022-05-01", "2022-06-01"], ["2022-06-02", "2022-07-01"]
    s2pre = connection.load_collection("SENTINEL2_L2A", temporal_extent=pre,
                                       spatial_extent=BOX, bands=["B04", "B08"])
    prendvi = s2pre.ndvi().mean_time()
    s2post = connection.load_collection("SENTINEL2_L2A", temporal_extent=post,
                                        spatial_extent=BOX, bands=["B04", "B08"])
    postndvi = s2post.ndvi().mean_time()
    diff = postndvi - prendvi
    diff.execute_batch(title="difference of NDVI", outputfile=tmp_path / "NDVIDiff.tiff",
                       output_format="GTiff")
    img = rasterio.open(tmp_path / "NDVIDiff.tiff")
    expected = (np.nanmean(ndvi(sample_data_dir, *post), axis=0)
                - np.nanmean(ndvi(sample_data_dir, *pre), axis=0))
    np.testing.assert_allclose(img.read(1), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal((img.read(1) < -0.48) & (img.read(1) > -1),
                                  (expected < -0.48) & (expected > -1))
    # the format repeated as an option is dropped only when it names the same format
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        diff.save_result(format="GTiff", options={"output_format": "netCDF"}).download()
    assert info.value.code == "ProcessParameterInvalid"
    assert "output_format" in info.value.message and "netCDF" in info.value.message


SMOOTHING_UDF = """
from scipy.signal import savgol_filter
from openeo.udf import XarrayDataCube

def apply_datacube(cube: XarrayDataCube, context: dict) -> XarrayDataCube:
    array = cube.get_array()
    filled = array.interpolate_na(dim='t')
    smoothed_array = savgol_filter(filled.values, 5, 2, axis=0)
    return DataCube(xarray.DataArray(smoothed_array, dims=array. dims,coords=array.coords))
"""


def lonlat_rectangle(west: float, south: float, east: float, north: float) -> dict:
    """A UTM (32632) rectangle as a lon/lat GeoJSON polygon (its edges bend by far less than a
    millimetre: the pixels whose centres are inside are exactly the rectangle's)."""
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    ring = [list(to_ll.transform(x, y)) for x, y in
            ((west, north), (west, south), (east, south), (east, north))]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def test_ndvi_timeseries_udf_smoothing(connection, sample_data_dir: Path,
                                       tmp_path: Path) -> None:
    """NDVI_Timeseries_UDF_Smoothing.ipynb: no spatial extent, a GeometryCollection of fields
    (shapely), a mask of SCL dilated by apply_kernel, a Savitzky-Golay UDF along t in
    apply_dimension(code=...), aggregate_spatial mean to JSON read with
    timeseries_json_to_pandas. The notebook's UDF fails (savgol_filter's default edge mode
    refuses the NaN of pixels masked at every date; then the undefined `DataCube`): an openEO
    error with the UDF's line; fixed (mode="nearest", XarrayDataCube), the values."""
    fields = shapely.geometry.shape({"type": "GeometryCollection", "geometries": [
        lonlat_rectangle(680000, 5151200, 680150, 5151500),
        lonlat_rectangle(680150, 5151300, 680300, 5151500)]})
    dates = ("2022-06-01", "2022-07-01")
    cube = connection.load_collection("SENTINEL2_L2A", temporal_extent=dates,
                                      bands=["B04", "B08", "SCL"])
    red = cube.band("B04")
    nir = cube.band("B08")
    ndvi_cube = (nir - red) / (nir + red)
    classification = cube.band("SCL")
    mask = ~ ((classification == 4) | (classification == 5))
    mask = mask.apply_kernel(gaussian_kernel())
    mask = mask > 0.1
    masked_ndvi = ndvi_cube.mask(mask)

    def timeseries(code: str) -> pd.DataFrame:
        smoothed_ndvi = masked_ndvi.apply_dimension(code=openeo.UDF(code), dimension="t")
        smoothed_timeseries = smoothed_ndvi.aggregate_spatial(geometries=fields,
                                                              reducer="mean")
        smoothed_timeseries.download(tmp_path / "timeseries-smoothed.json", format="JSON")
        with open(tmp_path / "timeseries-smoothed.json") as f:
            ts = timeseries_json_to_pandas(json.load(f))
        ts.index = pd.to_datetime(ts.index)
        return ts

    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        timeseries(SMOOTHING_UDF)
    assert info.value.code == "ProcessParameterInvalid"
    assert "infs or NaNs" in info.value.message and "line 8" in info.value.message
    ts = timeseries(SMOOTHING_UDF.replace("return DataCube(", "import xarray\n"
                                          "    return XarrayDataCube(")
                    .replace("5, 2, axis=0", "5, 2, axis=0, mode='nearest'"))

    # independently: the neighbours outside the fields count in the kernel (no extent)
    pad = 60
    box = {"west": BOX["west"] - pad, "south": BOX["south"] - pad,
           "east": BOX["east"] + pad, "north": BOX["north"] + pad}
    raw = {b: sample_series(sample_data_dir, b, box, *dates) for b in ("B04", "B08", "SCL")}
    days = list(raw["B04"])
    r, n = np.stack(list(raw["B04"].values())), np.stack(list(raw["B08"].values()))
    scl = np.stack(list(raw["SCL"].values())).repeat(2, axis=1).repeat(2, axis=2)
    clouds = (~np.isin(scl, (4, 5))).astype(float)
    dilated = np.stack([scipy.ndimage.correlate(c, gaussian_kernel(), mode="constant",
                                                cval=0) for c in clouds]) > 0.1
    masked = xr.DataArray(np.where(dilated, np.nan, (n - r) / (n + r))[:, 6:-6, 6:-6],
                          dims=("t", "y", "x"), coords={"t": pd.to_datetime(days)})
    smoothed = scipy.signal.savgol_filter(masked.interpolate_na(dim="t").values, 5, 2, axis=0,
                                          mode="nearest")
    expected = pd.DataFrame({0: np.nanmean(smoothed[:, :, :15], axis=(1, 2)),
                             1: np.nanmean(smoothed[:, :20, 15:], axis=(1, 2))},
                            index=pd.to_datetime(days))
    assert list(ts.index.strftime("%Y-%m-%d")) == days
    np.testing.assert_allclose(ts.to_numpy(dtype=float), expected.to_numpy(), rtol=1e-5,
                               equal_nan=True)
    assert np.isfinite(ts.to_numpy(dtype=float)).any()


def test_load_collection_v1_scl_cloud_mask_max_time(connection, sample_data_dir: Path,
                                                    tmp_path: Path) -> None:
    """Load_Collection_v1.ipynb: max_cloud_cover, a mask of SCL 7|8 resampled onto the cube
    itself and applied to all its bands, max_time, both images downloaded to .tiff."""
    cube = connection.load_collection(
        "SENTINEL2_L2A", bands=["B04", "B03", "B02", "SCL"],
        temporal_extent=("2022-05-01", "2022-05-30"), spatial_extent=BOX, max_cloud_cover=50)
    scl_cube = cube.band("SCL")
    mask = (scl_cube == 7) | (scl_cube == 8)
    mask_resampled = mask.resample_cube_spatial(cube)
    cube_masked = cube.mask(mask_resampled)
    final_image = cube_masked.max_time()
    image = cube.max_time()
    final_image.download(tmp_path / "RGB_masked.tiff")
    image.download(tmp_path / "RGB_withoutmask.tiff")
    img = rasterio.open(tmp_path / "RGB_withoutmask.tiff").read()
    masked_img = rasterio.open(tmp_path / "RGB_masked.tiff").read()

    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    clear = {i["datetime"][:10] for i in json.loads((folder / "items.json").read_text())["items"]
             if i["eo:cloud_cover"] <= 50}
    stacks = {b: {d: v for d, v in sample_series(sample_data_dir, b, BOX, "2022-05-01",
                                                 "2022-05-30").items() if d in clear}
              for b in ("B04", "B03", "B02", "SCL")}
    scl = np.stack(list(stacks["SCL"].values())).repeat(2, axis=1).repeat(2, axis=2)
    cloud = np.isin(scl, (7, 8))
    assert img.shape == masked_img.shape == (4, 30, 30)
    for i, band in enumerate(("B04", "B03", "B02")):
        values = np.stack(list(stacks[band].values()))
        np.testing.assert_allclose(img[i], values.max(axis=0))
        with np.errstate(all="ignore"):
            expected = np.nanmax(np.where(cloud, np.nan, values), axis=0)
        np.testing.assert_allclose(masked_img[i], expected, equal_nan=True)
