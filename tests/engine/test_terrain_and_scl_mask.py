"""to_scl_dilation_mask, slope and aspect on small chunked cubes, against independent
computations: scipy.ndimage's direct 2-D convolution/erosion for the mask, plain numpy
slicing (Horn's formula) and pyproj.Geod pixel sizes for the terrain."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage
import xarray as xr
from pyproj import Geod
from tests.support.terrain import horn

from terracube import errors
from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube, is_lazy
from terracube.engine.processes.masks_cdse import to_scl_dilation_mask
from terracube.engine.processes.terrain import aspect, slope


def cube(values: np.ndarray, xs: np.ndarray, ys: np.ndarray, crs: int, band: str,
         chunks: int) -> RasterCube:
    data = xr.DataArray(da.from_array(values, chunks=(1, 1, chunks, chunks)),
                        dims=["t", "bands", "y", "x"],
                        coords={"t": np.array(["2022-06-17"], dtype="datetime64[ns]"),
                                "bands": [band], "y": ys, "x": xs})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", crs), Dimension("x", SPATIAL, "x", crs))
    return RasterCube(data, dims)


def expected_dilation(scl: np.ndarray, good: list[int], cloudy: list[int], erosion: int,
                      size1: int, size2: int) -> tuple[np.ndarray, np.ndarray]:
    """(mask, near-threshold pixels) computed with direct 2-D scipy.ndimage operations."""
    def kernel(size: int) -> np.ndarray:
        r = size // 2
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        k = np.floor(10000.0 * np.exp(-(xx**2 + yy**2) / (2 * (size / 6.0) ** 2)))
        return k / k.sum()

    def disk(size: int) -> np.ndarray:
        r = size // 2
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        return xx**2 + yy**2 <= r * r

    out, close = np.zeros(scl.shape, bool), np.zeros(scl.shape, bool)
    for flags, size, threshold in ((~np.isin(scl, good), size1, 0.057),
                                   (np.isin(scl, cloudy), size2, 0.025)):
        if erosion:
            flags = scipy.ndimage.binary_erosion(flags, structure=disk(erosion),
                                                 border_value=1)
        share = scipy.ndimage.convolve(flags.astype(float), kernel(size), mode="constant")
        out |= share > threshold
        close |= np.abs(share - threshold) < 1e-9
    return out, close


@pytest.mark.parametrize("erosion", [0, 3])
def test_scl_dilation_mask_equals_a_direct_convolution(erosion: int) -> None:
    rng = np.random.default_rng(7)
    scl = np.full((90, 110), 4, dtype="float32")
    scl[:, :50] = 5
    scl[60:90, 80:110] = 6
    scl[40:50, 60:75] = 9  # a cloud
    scl[70:73, 10:14] = 3  # its shadow
    scl[rng.integers(0, 90, 12), rng.integers(0, 110, 12)] = 8  # single cloudy pixels
    scl[rng.integers(0, 90, 12), rng.integers(0, 110, 12)] = 1  # saturated: not valid
    scl[0:3, 0:3] = np.nan  # no-data is never valid
    xs, ys = 500000 + 10 * np.arange(110) + 5, 5200000 - 10 * np.arange(90) - 5
    # chunks of 32 pixels: a kernel of 41 reaches over several chunks
    data = cube(scl[None, None], xs, ys, 32632, "SCL", 32)
    got = to_scl_dilation_mask(data, erosion_kernel_size=erosion, kernel1_size=9,
                               kernel2_size=41)
    assert is_lazy(got)
    assert got.data.dtype == bool
    assert [str(b) for b in got.labels("bands")] == ["SCL"]
    expected, close = expected_dilation(scl, [2, 4, 5, 6, 7], [3, 8, 9, 10, 11], erosion,
                                        9, 41)
    values = got.data.values[0, 0]
    assert 0 < expected.sum() < expected.size
    np.testing.assert_array_equal(values[~close], expected[~close])


def test_scl_dilation_mask_defaults_and_bad_arguments() -> None:
    scl = np.full((30, 30), 4, dtype="float32")
    scl[10, 10] = 9
    xs, ys = 10 * np.arange(30) + 5.0, 1000 - 10 * np.arange(30) - 5.0
    got = to_scl_dilation_mask(cube(scl[None, None], xs, ys, 32632, "SCL", 16))
    expected, close = expected_dilation(scl, [2, 4, 5, 6, 7], [3, 8, 9, 10, 11], 0, 17, 201)
    values = got.data.values[0, 0]
    np.testing.assert_array_equal(values[~close], expected[~close])
    with pytest.raises(errors.ProcessParameterInvalid) as info:
        to_scl_dilation_mask(cube(scl[None, None], xs, ys, 32632, "SCL", 16),
                             kernel1_size=-3)
    assert info.value.argument == "kernel1_size"


def test_slope_and_aspect_of_a_projected_dem() -> None:
    yy, xx = np.mgrid[0:40, 0:50].astype(float)
    z = 3 * xx - 2 * yy + 0.05 * xx * yy + 10 * np.sin(xx / 5)  # a bumpy plane
    z[20, 20] = np.nan
    xs, ys = 1000 + 30 * np.arange(50) + 15, 9000 - 30 * np.arange(40) - 15
    dem = cube(z[None, None], xs, ys, 32633, "DEM", 16)
    s, a = slope(dem), aspect(dem)
    assert is_lazy(s) and is_lazy(a)
    assert [str(b) for b in s.labels("bands")] == ["DEM_slope"]
    assert [str(b) for b in a.labels("bands")] == ["DEM_aspect"]
    es, ea = horn(z, np.full(40, 30.0), np.full(40, 30.0))
    es[20, 20] = ea[20, 20] = np.nan
    np.testing.assert_allclose(s.data.values[0, 0], es, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(a.data.values[0, 0], ea, rtol=1e-12, equal_nan=True)


def test_slope_of_a_plane_facing_east_on_a_geographic_grid() -> None:
    res = 1 / 240  # 15 arc seconds, like GEBCO
    lats = 42.5 - res * (np.arange(30) + 0.5)
    lons = 74.0 + res * (np.arange(36) + 0.5)
    geod = Geod(ellps="WGS84")
    widths = np.array([geod.inv(74.0, lat, 74.0 + res, lat)[2] for lat in lats])
    heights = np.array([geod.inv(74.0, lat - res / 2, 74.0, lat + res / 2)[2] for lat in lats])
    # elevation falling by 1 m per metre eastwards: 45 degrees, facing east (90)
    east_m = np.cumsum(np.tile(widths[:, None], (1, 36)), axis=1)
    z = 5000 - east_m
    dem = cube(z[None, None], lons, lats, 4326, "elevation", 16)
    got_s, got_a = slope(dem).data.values[0, 0], aspect(dem).data.values[0, 0]
    es, ea = horn(z, widths, heights)
    np.testing.assert_allclose(got_s, es, rtol=1e-6)
    np.testing.assert_allclose(got_a, ea, rtol=1e-6)
    np.testing.assert_allclose(got_s[1:-1, 1:-1], 45.0, atol=1e-3)
    np.testing.assert_allclose(got_a[1:-1, 1:-1], 90.0, atol=0.2)  # rows differ in width
