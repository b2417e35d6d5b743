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


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
@pytest.mark.parametrize("nodata", [0, 0.0, 3, 255, -9999, 0.5, 1e6, -1.0, None, float("nan")])
def test_nodata_where_is_where_the_block_equals_the_nodata_value(dtype: str, nodata) -> None:
    """Integer blocks are compared in their own type and only when the value can be there;
    the answer is that of numpy's `block == nodata` (None: nowhere)."""
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype) if dtype != "float32" else None
    low, high = (info.min, info.max) if info else (-10000, 10000)
    for values in (rng.integers(low, high, (64, 48), endpoint=True),  # both ends, maybe nodata
                   rng.integers(1, 200, (64, 48)),  # no zero
                   np.full((5, 7), 3),  # every pixel the same
                   np.array([[low, high]])):  # only the ends of the type
        block = values.astype(dtype)
        got = direct_read.nodata_where(block, nodata)
        if nodata is None or np.isnan(nodata):
            assert got is None
            continue
        with np.errstate(invalid="ignore"):
            expected = block == nodata
        if expected.any():
            assert got is not None and got.dtype == bool and np.array_equal(got, expected)
        else:
            assert got is None
