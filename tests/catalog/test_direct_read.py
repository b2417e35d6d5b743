"""Local files on the load's own grid are read straight from the files (one windowed read per
chunk, datasets kept open per thread); the result equals odc-stac's for the same load."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dask
import numpy as np
import pytest
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox

from terracube.catalog import Catalog, direct_read
from terracube.datacube.request import BBox, LoadRequest

BOXES = {
    "window inside": BBox(679720, 5151080, 680680, 5151920, "EPSG:32632"),
    "across the edge": BBox(677500, 5149000, 678730, 5150210, "EPSG:32632"),
    "not on the pixel lattice": BBox(679723.3, 5151081.7, 680689.9, 5151924.1, "EPSG:32632"),
}


@pytest.fixture(scope="module")
def source(sample_data_dir: Path):
    return Catalog(sample_data_dir).get("SENTINEL2_L2A")


def odc_load(source, request: LoadRequest) -> xr.DataArray:
    """The same load through odc-stac only."""
    items = source.select_items(request)
    cube = source.load(request)  # the geobox of the load is that of the cube
    y, x = cube.data.y.values, cube.data.x.values
    geobox = GeoBox.from_bbox((x[0] - 5, y[-1] - 5, x[-1] + 5, y[0] + 5), crs="EPSG:32632",
                              resolution=10)
    return source._load_odc(items, list(request.bands), geobox)


@pytest.mark.parametrize("box", BOXES, ids=list(BOXES))
def test_aligned_local_read_equals_odc_stac(source, box: str) -> None:
    request = LoadRequest(bbox=BOXES[box], temporal_extent=("2022-05-01", "2022-07-01"),
                          bands=("B04", "B08", "B05", "SCL", "B01"))  # 10, 20 and 60 m
    cube = source.load(request)
    graph = dict(cube.data.data.__dask_graph__())
    assert any(str(k[0]).startswith("read-aligned-") for k in graph if isinstance(k, tuple))
    expected = odc_load(source, request)
    with dask.config.set(scheduler="threads"):
        got, want = cube.data.compute(), expected.compute()
    assert got.dtype == want.dtype == np.float32
    assert got.dims == want.dims
    for dim in ("t", "bands", "y", "x"):
        np.testing.assert_array_equal(got[dim].values, want[dim].values)
    np.testing.assert_array_equal(got.values, want.values)  # NaN where no-data, same places
    assert np.isnan(got.values).any() == (box == "across the edge")


def test_other_grids_go_through_odc_stac(source) -> None:
    box = BOXES["window inside"]
    for request in (LoadRequest(bbox=box, temporal_extent=("2022-06-01", "2022-06-03"),
                                bands=("B04",), resolution=15),
                    LoadRequest(bbox=box, temporal_extent=("2022-06-01", "2022-06-03"),
                                bands=("B04",), crs=3035)):
        cube = source.load(request)
        graph = dict(cube.data.data.__dask_graph__())
        assert not any(str(k[0]).startswith("read-aligned-") for k in graph
                       if isinstance(k, tuple))
        assert cube.data.dtype == np.float32


def test_a_replaced_file_is_read_again(tmp_path: Path, sample_data_dir: Path) -> None:
    folder = sample_data_dir / "samples" / "sentinel2_l2a" / "20220602"
    copy = tmp_path / "B04.tif"
    shutil.copy(folder / "B04.tif", copy)
    first = direct_read.read_window(str(copy), (0, 10), (0, 10), 0)
    with rasterio.open(folder / "B08.tif") as ds:
        nir = ds.read(1, window=((0, 10), (0, 10)))
    tmp = tmp_path / "new.tif"
    shutil.copy(folder / "B08.tif", tmp)
    os.replace(tmp, copy)
    second = direct_read.read_window(str(copy), (0, 10), (0, 10), 0)
    assert not np.array_equal(first, second, equal_nan=True)
    np.testing.assert_array_equal(second[0, 0], np.where(nir == 0, np.nan, nir))
