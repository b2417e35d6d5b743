"""Demo Sentinel-2 first steps: the cloud-masked composites and the field's NDVI series,
recomputed from the synthetic Sentinel-2 GeoTIFFs with numpy."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features

NAME = "demo_sentinel2"


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


def on_grid(path: Path, bounds, shape: tuple[int, int]) -> np.ndarray:
    """A band file on the 10 m grid of `bounds` (20 m SCL: the pixel under each centre)."""
    with rasterio.open(path) as src:
        rows = ((src.bounds.top - (bounds.top - (np.arange(shape[0]) + 0.5) * 10))
                // src.res[1]).astype(int)
        cols = (((bounds.left + (np.arange(shape[1]) + 0.5) * 10) - src.bounds.left)
                // src.res[0]).astype(int)
        data = src.read(1)[np.ix_(rows, cols)].astype("float64")
    data[data == 0] = np.nan  # no-data 0
    return data


def test_composites_and_field_series(run, course_server) -> None:
    kept = run.results
    with rasterio.open(kept["rgb_file"]) as src:
        rgb, bounds, shape, crs = src.read(), src.bounds, src.shape, src.crs
    with rasterio.open(kept["ndvi_max_file"]) as src:
        ndvi_max = src.read(1)
    folder = course_server.samples / "sentinel2_l2a"
    days = sorted(d for d in folder.iterdir() if "20220401" <= d.name < "20221001")
    stack = {band: np.stack([on_grid(d / f"{band}.tif", bounds, shape) for d in days])
             for band in ("B02", "B03", "B04", "B08", "SCL")}
    cloud = np.isin(stack["SCL"], [3, 8, 9, 10])
    clear = {band: np.where(cloud, np.nan, stack[band]) for band in ("B02", "B03", "B04",
                                                                     "B08")}
    summer = np.array(["20220601" <= d.name < "20220901" for d in days])
    for i, band in enumerate(("B04", "B03", "B02")):
        np.testing.assert_allclose(rgb[i], np.nanmedian(clear[band][summer], axis=0),
                                   rtol=1e-6)
    ndvi = (clear["B08"] - clear["B04"]) / (clear["B08"] + clear["B04"])
    np.testing.assert_allclose(ndvi_max, np.nanmax(ndvi, axis=0), rtol=1e-5)

    field = gpd.GeoDataFrame.from_features(
        [{"type": "Feature", "properties": {}, "geometry": kept["field"]}], crs=4326).to_crs(crs)
    with rasterio.open(kept["rgb_file"]) as src:
        inside = rasterio.features.geometry_mask(field.geometry, out_shape=shape,
                                                 transform=src.transform, invert=True)
    assert inside.sum() > 50
    expected = {d.name[:4] + "-" + d.name[4:6] + "-" + d.name[6:]: np.nanmean(ndvi[k][inside])
                for k, d in enumerate(days) if np.isfinite(ndvi[k][inside]).any()}
    assert kept["field_series"].keys() == expected.keys()
    for day, value in expected.items():
        assert kept["field_series"][day] == pytest.approx(value, abs=1e-5), day
