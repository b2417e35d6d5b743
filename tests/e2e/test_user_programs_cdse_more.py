"""More CDSE notebook samples (eu-cdse/notebook-samples, openeo/, from the repository's
history): ForestFire, LandslidesNDVI, Load_Collection_v1 and NDVI_Timeseries_UDF_Smoothing, each
adapted only in URL, login, extent and dates to the Sentinel-2 sample, run through the official
client against the shared server, values computed independently with numpy/scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import scipy.ndimage
import scipy.signal
from tests.support.data import sample_series

openeo = pytest.importorskip("openeo")
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
