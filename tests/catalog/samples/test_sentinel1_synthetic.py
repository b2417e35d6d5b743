"""The synthetic SENTINEL1_GRD sample: its acquisitions, its agreement with the Sentinel-2
sample's landscape and the DEM sample, determinism and size. (The collection-source contract
tests, tests/catalog/test_source_contract.py, check it too: it lists the VV and VH it holds.)"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from scipy.ndimage import map_coordinates

from terracube.catalog.samples import sentinel1_synthetic as s1
from terracube.catalog.samples.sentinel2_synthetic import _FIELD, _FOREST, _URBAN, _WATER, MAIZE
from terracube.catalog.samples.sentinel2_synthetic import _build_landscape as landscape_of_s2


@pytest.fixture(scope="module")
def folder(sample_data_dir: Path) -> Path:
    return s1.ensure_sentinel1_data(sample_data_dir)


@pytest.fixture(scope="module")
def items(folder: Path) -> list[dict]:
    return json.loads((folder / "items.json").read_text())["items"]


def read(folder: Path, item: dict, band: str) -> np.ndarray:
    with rasterio.open(folder / item["assets"][band]) as ds:
        assert (ds.crs.to_epsg(), ds.res, ds.shape) == (32632, (10.0, 10.0), (384, 384))
        return ds.read(1)


def test_two_orbits_every_12_days(items: list[dict]) -> None:
    for state, orbit, first, count in (("ascending", 117, "2022-04-02T17:13:42Z", 16),
                                       ("descending", 168, "2022-04-06T05:09:24Z", 15)):
        mine = [i for i in items if i["properties"]["sat:orbit_state"] == state]
        assert len(mine) == count and mine[0]["datetime"] == first
        times = [dt.datetime.fromisoformat(i["datetime"].replace("Z", "+00:00")) for i in mine]
        assert {b - a for a, b in zip(times, times[1:])} == {dt.timedelta(days=12)}
        assert {i["properties"]["sat:relative_orbit"] for i in mine} == {orbit}
        absolute = [i["properties"]["sat:absolute_orbit"] for i in mine]
        assert np.all(np.diff(absolute) == 175)
        # Sentinel-1A: relative = (absolute - 73) mod 175 + 1
        assert {(a - 73) % 175 + 1 for a in absolute} == {orbit}
    assert all(i["properties"]["polarization"] == "DV" for i in items)


def test_backscatter_follows_the_landscape_of_the_sentinel2_sample(folder: Path,
                                                                   items: list[dict]) -> None:
    land = landscape_of_s2()
    july = next(i for i in items if i["datetime"].startswith("2022-07-19"))
    april = next(i for i in items if i["datetime"].startswith("2022-04-14"))
    vv, vh = read(folder, july, "VV"), read(folder, july, "VH")
    flat = land.elevation < 0.6  # the valley floor: no terrain effect to speak of
    median_db = {c: 10 * np.log10(np.median(vv[(land.cover == c) & flat]))
                 for c in (_WATER, _FIELD, _URBAN)}
    assert median_db[_WATER] < median_db[_FIELD] - 5 < median_db[_URBAN] - 10
    assert 10 * np.log10(np.median(vv[land.cover == _FOREST])) > median_db[_FIELD]
    assert np.median(vh) < np.median(vv)  # cross-polarised returns are weaker
    # Maize grows between April and July: its VH rises by several dB.
    maize = (land.cover == _FIELD) & (land.crop[land.parcel] == MAIZE) & flat
    rise = 10 * np.log10(np.median(vh[maize]) / np.median(read(folder, april, "VH")[maize]))
    assert rise > 3


def test_terrain_is_the_dem_samples(folder: Path, sample_data_dir: Path) -> None:
    """The COPERNICUS_30 sample is the radar's terrain sampled at its pixel centres."""
    from terracube.catalog.samples.dem_landcover_synthetic import ensure_dem_landcover_data

    with rasterio.open(folder / s1.TERRAIN_NAME) as ds:
        heights = ds.read(1).astype(np.float64)
    with rasterio.open(ensure_dem_landcover_data(sample_data_dir) / "copernicus_30.tif") as ds:
        dem = ds.read(1)
        cols, rows = np.meshgrid(np.arange(ds.width) + 0.5, np.arange(ds.height) + 0.5)
        lon, lat = ds.transform * (cols, rows)
    x, y = Transformer.from_crs(4326, 32632, always_xy=True).transform(lon, lat)
    col = (x - s1.SAMPLE_BOUNDS[0]) / 10 - 0.5
    row = (s1.SAMPLE_BOUNDS[3] - y) / 10 - 0.5
    inside = (col > 1) & (col < 382) & (row > 1) & (row < 382)
    expected = map_coordinates(heights, [row[inside], col[inside]], order=1)
    np.testing.assert_allclose(dem[inside], expected, atol=0.05)
    assert 230 < heights.min() and heights.max() < 1800


def test_generation_is_deterministic_and_small(folder: Path, items: list[dict],
                                               tmp_path: Path) -> None:
    again = s1.ensure_sentinel1_data(tmp_path)
    for rel in (s1.TERRAIN_NAME, items[0]["assets"]["VV"], items[-1]["assets"]["VH"]):
        assert (again / rel).read_bytes() == (folder / rel).read_bytes(), rel
    size = sum(p.stat().st_size for p in again.rglob("*") if p.is_file())
    assert size < 30e6
