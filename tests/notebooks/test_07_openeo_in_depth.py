"""Lesson 07: cloud-masked NDVI composites, the UDP, the batch job and the UDF, checked against
the synthetic Sentinel-2 files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import from_bounds

NAME = "07_openeo_in_depth"
WINDOW = (679720, 5151080, 680680, 5151920)  # west, south, east, north in EPSG:32632
DATES = ("20220601", "20220901")


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


def read(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The lesson's window of one band file as float, no-data (0) as NaN, on the 10 m grid."""
    with rasterio.open(path) as src:
        window = from_bounds(*WINDOW, transform=src.transform)
        data = src.read(1, window=window, out_shape=shape, resampling=Resampling.nearest)
    data = data.astype("float64")
    data[data == 0] = np.nan
    return data


def test_cloud_masked_median_ndvi_matches_the_files(run, course_server) -> None:
    folder = course_server.samples / "sentinel2_l2a"
    days = sorted(d for d in folder.iterdir() if DATES[0] <= d.name < DATES[1])
    red = np.stack([read(d / "B04.tif") for d in days])
    nir = np.stack([read(d / "B08.tif") for d in days])
    scl = np.stack([read(d / "SCL.tif", shape=red.shape[1:]) for d in days])
    ndvi = (nir - red) / (nir + red)
    cloud = np.isin(scl, [3, 8, 9, 10])
    kept = run.results
    assert red.shape == (19, 84, 96)
    assert kept["mean_cloud_share"] == pytest.approx(cloud.mean(), abs=1e-6)
    assert kept["mean_ndvi_median_raw"] == pytest.approx(
        np.nanmean(np.nanmedian(ndvi, axis=0)), abs=1e-5)
    clear = np.where(cloud, np.nan, ndvi)
    assert kept["mean_ndvi_median_clear"] == pytest.approx(
        np.nanmean(np.nanmedian(clear, axis=0)), abs=1e-5)
    # clouds have a low NDVI: masking them raises the median
    assert kept["mean_ndvi_median_clear"] > kept["mean_ndvi_median_raw"] + 0.01


def test_udp_udf_and_batch_job_agree_with_the_step_by_step_graph(run) -> None:
    kept = run.results
    assert kept["udp_difference"] == 0.0
    assert kept["udf_difference"] < 1e-6
    assert kept["job_status"] == "finished"
    assert kept["job_asset_epsg"] == [32632]
    assert 1000 < kept["triangle_pixels"] < 8064
