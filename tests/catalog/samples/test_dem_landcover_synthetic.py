"""The synthetic COPERNICUS_30/_90 and ESA_WORLDCOVER samples: deterministic, small, on CDSE's
grids, and derived from the Sentinel-2 sample's landscape (checked by transforming pixel
centres with pyproj and reading the landscape's 10 m grid directly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from terracube.catalog.samples import dem_landcover_synthetic as dl
from terracube.catalog.samples.sentinel2_synthetic import SAMPLE_BOUNDS, _build_landscape


@pytest.fixture(scope="module")
def folder(sample_data_dir: Path) -> Path:
    return dl.ensure_dem_landcover_data(sample_data_dir)


def test_generation_is_deterministic_and_small(folder: Path, tmp_path: Path) -> None:
    again = dl.ensure_dem_landcover_data(tmp_path)
    sizes = 0
    for m in dl.STATIC_MAPS:
        assert (again / m.file_name).read_bytes() == (folder / m.file_name).read_bytes()
        sizes += (folder / m.file_name).stat().st_size
    assert sizes < 1_000_000
    # complete: not made again (the files keep their times)
    stamp = (again / dl.STATIC_MAPS[0].file_name).stat().st_mtime_ns
    dl.ensure_dem_landcover_data(tmp_path)
    assert (again / dl.STATIC_MAPS[0].file_name).stat().st_mtime_ns == stamp


@pytest.mark.parametrize("m", dl.STATIC_MAPS, ids=lambda m: m.collection_id)
def test_grids_are_cdses_and_cover_the_sentinel2_sample(folder: Path, m: dl.StaticMap) -> None:
    with rasterio.open(folder / m.file_name) as ds:
        assert ds.crs.to_epsg() == 4326 and ds.dtypes[0] == m.data_type
        assert ds.nodata == m.nodata
        t = ds.transform
        assert t.a == pytest.approx(m.pixel_degrees, rel=1e-12) and t.e == -t.a
        # DEM: pixel centres on whole (1" or 3") steps, as in the GLO tiles; WorldCover:
        # edges on whole steps (its tiles start on whole degrees).
        offset = 0.5 if m.centre_on_lattice else 0.0
        for edge in (t.c, t.f):
            k = edge / t.a + offset
            assert abs(k - round(k)) < 1e-6
        west, north = t * (0, 0)
        east, south = t * (ds.width, ds.height)
        values = ds.read(1)
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    x0, y0, x1, y1 = SAMPLE_BOUNDS
    for x, y in ((x0, y0), (x0, y1), (x1, y0), (x1, y1)):
        lon, lat = to_ll.transform(x, y)
        assert west <= lon <= east and south <= lat <= north
    assert (values != m.nodata).all()


def test_values_come_from_the_sentinel2_landscape(folder: Path) -> None:
    """Each pixel centre, transformed to the 10 m UTM grid of the Sentinel-2 sample, has the
    elevation and the WorldCover class of the landscape there."""
    landscape = _build_landscape()
    elevation = dl.elevation_metres(landscape)
    to_utm = Transformer.from_crs(4326, 32632, always_xy=True)
    rng = np.random.default_rng(1)
    for m in dl.STATIC_MAPS:
        truth = elevation if m.is_dem else dl.worldcover_classes(landscape, m.year or 2021)
        with rasterio.open(folder / m.file_name) as ds:
            values = ds.read(1)
            rows = rng.integers(0, ds.height, 400)
            cols = rng.integers(0, ds.width, 400)
            lon, lat = ds.transform * (cols + 0.5, rows + 0.5)
        x, y = to_utm.transform(lon, lat)
        inside = (x > SAMPLE_BOUNDS[0] + 10) & (x < SAMPLE_BOUNDS[2] - 10) & \
            (y > SAMPLE_BOUNDS[1] + 10) & (y < SAMPLE_BOUNDS[3] - 10)
        r = ((SAMPLE_BOUNDS[3] - y) // 10).astype(int)[inside]
        c = ((x - SAMPLE_BOUNDS[0]) // 10).astype(int)[inside]
        got = values[rows[inside], cols[inside]]
        if m.is_dem:
            # bilinear between the 10 m centres: within the neighbours' range
            lo = np.min([elevation[np.clip(r + dr, 0, 383), np.clip(c + dc, 0, 383)]
                         for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
            hi = np.max([elevation[np.clip(r + dr, 0, 383), np.clip(c + dc, 0, 383)]
                         for dr in (-1, 0, 1) for dc in (-1, 0, 1)], axis=0)
            assert ((got >= lo - 1e-3) & (got <= hi + 1e-3)).all()
        else:
            assert (got == truth[r, c]).mean() > 0.95  # but for centres on 10 m borders
    assert 230 < elevation.min() and elevation.max() < 1700


def test_land_cover_classes_follow_the_landscape() -> None:
    landscape = _build_landscape()
    for year in (2020, 2021):
        codes = dl.worldcover_classes(landscape, year)
        assert set(np.unique(codes)) == {10, 30, 40, 50, 80}
        assert (codes[landscape.elevation > 0.8] == 10).all()
    changed = dl.worldcover_classes(landscape, 2020) != dl.worldcover_classes(landscape, 2021)
    assert changed.any()
