"""Issue 11, defect 2: load_collection, load_stac, filter_bbox and the push-down optimizer select
exactly the pixels whose centre lies in the bounding box (borders included), through the
official client against a real server; expected pixels computed with rasterio/numpy from the
files themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import Transformer
from tests.support.processes import StaticHttpServer
from tests.support.real_data import BELGIUM_STAC, need

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

# 7 m inside the README box on every side: a covering load would give 96 x 84 pixels.
BOX = {"west": 679727, "south": 5151087, "east": 680673, "north": 5151913, "crs": 32632}
DAY = ["2022-06-02", "2022-06-03"]


def centre_inside(path: Path, west: float, south: float, east: float, north: float,
                  band: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x centres, y centres, values) of the file's pixels whose centre is in the box."""
    with rasterio.open(path) as ds:
        t = ds.transform
        xs = t.c + (np.arange(ds.width) + 0.5) * t.a
        ys = t.f + (np.arange(ds.height) + 0.5) * t.e
        cols = np.flatnonzero((xs >= west) & (xs <= east))
        rows = np.flatnonzero((ys >= south) & (ys <= north))
        values = ds.read(band)[np.ix_(rows, cols)].astype("float32")
        if ds.nodata is not None:
            values[values == ds.nodata] = np.nan
    return xs[cols], ys[rows], values


def s2_file(sample_data_dir: Path, band: str) -> Path:
    folder = sample_data_dir / "samples" / "sentinel2_l2a"
    items = json.loads((folder / "items.json").read_text())["items"]
    item = next(i for i in items if i["datetime"].startswith(DAY[0]))
    return folder / item["assets"][band]


def download(cube, path: Path) -> xr.DataArray:
    cube.download(path, format="netCDF")
    with xr.open_dataset(path) as ds:
        return ds.load()


def test_load_filter_bbox_and_push_down_select_the_same_pixels(
        con, sample_data_dir: Path, tmp_path: Path) -> None:
    xs, ys, b04 = centre_inside(s2_file(sample_data_dir, "B04"), *(BOX[k] for k in (
        "west", "south", "east", "north")))
    assert b04.shape == (82, 94)

    loaded = download(con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                                          temporal_extent=DAY, bands=["B04"]),
                      tmp_path / "load.nc")
    # filter_bbox on a bigger load: the optimizer pushes the box down into the load.
    bigger = {"west": 679000, "south": 5150500, "east": 681000, "north": 5152500, "crs": 32632}
    pushed = download(con.load_collection("SENTINEL2_L2A", spatial_extent=bigger,
                                          temporal_extent=DAY, bands=["B04"])
                      .filter_bbox(**BOX), tmp_path / "pushed.nc")
    # filter_bbox on a load without extent
    filtered = download(con.load_collection("SENTINEL2_L2A", temporal_extent=DAY,
                                            bands=["B04"]).filter_bbox(**BOX),
                        tmp_path / "filtered.nc")
    for ds in (loaded, pushed, filtered):
        np.testing.assert_allclose(ds.x.values, xs)
        np.testing.assert_allclose(ds.y.values, ys)
        np.testing.assert_array_equal(ds["B04"].values[0], b04)


def test_a_lon_lat_box_selects_the_same_pixels_in_load_and_filter_bbox(
        con, sample_data_dir: Path, tmp_path: Path) -> None:
    ll = {"west": 11.3305, "south": 46.4905, "east": 11.3418, "north": 46.4978}
    box = Transformer.from_crs(4326, 32632, always_xy=True).transform_bounds(
        ll["west"], ll["south"], ll["east"], ll["north"], densify_pts=21)
    xs, ys, b04 = centre_inside(s2_file(sample_data_dir, "B04"), *box)
    loaded = download(con.load_collection("SENTINEL2_L2A", spatial_extent=ll,
                                          temporal_extent=DAY, bands=["B04"]),
                      tmp_path / "load.nc")
    filtered = download(con.load_collection("SENTINEL2_L2A", temporal_extent=DAY,
                                            bands=["B04"]).filter_bbox(**ll),
                        tmp_path / "filtered.nc")
    for ds in (loaded, filtered):
        np.testing.assert_allclose(ds.x.values, xs)
        np.testing.assert_allclose(ds.y.values, ys)
        np.testing.assert_array_equal(ds["B04"].values[0], b04)


def test_load_stac_selects_pixel_centres_in_the_box(con, tmp_path: Path) -> None:
    tif = need(BELGIUM_STAC) / "openEO_2023-06-01Z.tif"
    box = {"west": 644607, "south": 5676247, "east": 644683, "north": 5676303, "crs": 32631}
    xs, ys, b02 = centre_inside(tif, box["west"], box["south"], box["east"], box["north"],
                                band=3)
    assert b02.shape == (5, 7)  # a covering read would give 7 x 9
    http = StaticHttpServer(BELGIUM_STAC.parent)
    try:
        url = f"{http.url}/{BELGIUM_STAC.name}/collection.json"
        when = ["2023-06-01", "2023-06-02"]
        loaded = download(con.load_stac(url, spatial_extent=box, bands=["B02"],
                                        temporal_extent=when), tmp_path / "stac.nc")
        filtered = download(con.load_stac(url, bands=["B02"], temporal_extent=when)
                            .filter_bbox(**box), tmp_path / "stac_filtered.nc")
    finally:
        http.stop()
    for ds in (loaded, filtered):
        np.testing.assert_allclose(ds.x.values, xs)
        np.testing.assert_allclose(ds.y.values, ys)
        np.testing.assert_array_equal(ds["B02"].values[0], b02)


def test_a_box_between_pixel_centres_is_an_openeo_error(con) -> None:
    tiny = {"west": 679721, "south": 5151081, "east": 679724, "north": 5151084, "crs": 32632}
    with pytest.raises(openeo.rest.OpenEoApiError) as info:
        con.load_collection("SENTINEL2_L2A", spatial_extent=tiny, temporal_extent=DAY,
                            bands=["B04"]).download(format="netCDF")
    assert info.value.http_status_code == 400
    assert "pixel centre" in info.value.message


def test_points_pushed_down_keep_the_pixels_they_fall_in(
        con, sample_data_dir: Path, tmp_path: Path) -> None:
    # Both pixel centres lie outside the points' bounding box: the optimizer widens the box
    # it pushes into the load by a pixel, else the load would miss them.
    points = {"type": "MultiPoint", "coordinates": [[679729, 5151911], [680671, 5151089]]}
    to_ll = Transformer.from_crs(32632, 4326, always_xy=True)
    ll = {"type": "MultiPoint", "coordinates": [list(to_ll.transform(*p))
                                                for p in points["coordinates"]]}
    got = download(con.load_collection("SENTINEL2_L2A", temporal_extent=DAY, bands=["B04"])
                   .filter_spatial(ll), tmp_path / "points.nc")
    with rasterio.open(s2_file(sample_data_dir, "B04")) as ds:
        expected = [float(v[0]) for v in ds.sample(points["coordinates"])]
    values = got["B04"].values[0]
    found = values[~np.isnan(values)]
    assert sorted(found.tolist()) == sorted(expected)
    np.testing.assert_allclose(got.x.values[[0, -1]], [679725, 680675])
    np.testing.assert_allclose(got.y.values[[0, -1]], [5151915, 5151085])
