"""Raster cubes written as COG GeoTIFF and netCDF, read back with rasterio and xarray."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import xarray as xr

from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.results.writers import _scratch_overviews, write_result


def cube(bands: list[str]) -> RasterCube:
    rng = np.random.default_rng(1)
    values = rng.random((2, len(bands), 3, 4)).astype("float32")
    values[0, 0, 0, 0] = np.nan
    da = xr.DataArray(values, dims=["t", "bands", "y", "x"], coords={
        "t": np.array(["2022-06-02", "2022-06-07"], dtype="datetime64[ns]"), "bands": bands,
        "y": [5151915.0, 5151905.0, 5151895.0], "x": [679725.0, 679735.0, 679745.0, 679755.0]})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 32632), Dimension("x", SPATIAL, "x", 32632))
    return RasterCube(da.chunk({"t": 1}), dims)


def test_gtiff_is_a_cog_with_named_bands(tmp_path) -> None:
    c = cube(["B04", "B08"])
    (f,) = write_result(c, "GTiff", {}, tmp_path)
    with rasterio.open(f.path) as ds:
        assert ds.count == 4 and ds.crs.to_epsg() == 32632
        assert ds.transform == rasterio.Affine(10, 0, 679720, 0, -10, 5151920)
        assert ds.descriptions[1] == "2022-06-02T00:00:00Z_B08"
        assert ds.profile["tiled"] and np.isnan(ds.nodata)
        np.testing.assert_array_equal(ds.read(), c.data.values.reshape(4, 3, 4))


def test_netcdf_single_band_keeps_a_bands_dimension_for_dataarray_readers(tmp_path) -> None:
    c = cube(["B04"])
    (f,) = write_result(c, "netCDF", {}, tmp_path)
    ds = xr.open_dataset(f.path)
    # The grid mapping is a data variable (as on CDSE), so a reader can't mistake the file
    # for one DataArray without bands.
    assert set(ds.data_vars) == {"B04", "crs"}
    # ... named `crs` as CDSE names it: users' code drops it by that name.
    assert ds["B04"].attrs["grid_mapping"] == "crs"
    assert set(ds.drop_vars("crs").data_vars) == {"B04"}
    with pytest.raises(ValueError):
        xr.open_dataarray(f.path)
    full = xr.open_dataset(f.path, decode_coords="all")
    assert set(full.data_vars) == {"B04"} and full.rio.crs.to_epsg() == 32632
    np.testing.assert_array_equal(full["B04"].values, c.data.sel(bands="B04").values)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_quicklook_stretches_three_bands_to_8_bits(tmp_path, fmt) -> None:
    c = cube(["B04", "B03", "B02"])
    one_date = c.with_data(c.data.isel(t=1))
    (f,) = write_result(one_date, fmt, {"min": 0, "max": 1}, tmp_path)
    with rasterio.open(f.path) as ds:
        img = ds.read()
    assert img.dtype == np.uint8 and img.shape[1:] == (3, 4)
    expected = np.clip(np.round(one_date.data.values * 254) + 1, 1, 255).astype("uint8")
    if fmt == "PNG":
        assert img.shape[0] == 4 and (img[3] == 255).all()  # alpha: every pixel is valid
        np.testing.assert_array_equal(img[:3], expected)
    else:
        assert img.shape[0] == 3  # lossy on 12 random pixels: only the overall level holds
        assert abs(img.astype(int).mean() - expected.astype(int).mean()) < 15


def test_quicklook_refuses_a_stack_it_cannot_show(tmp_path) -> None:
    from terracube import errors

    with pytest.raises(errors.OpenEOError, match="1 \\(grey\\) or 3 \\(RGB\\)"):
        write_result(cube(["B04", "B08"]), "PNG", {}, tmp_path)


def test_zarr_is_one_zip_file_that_xarray_opens(tmp_path) -> None:
    import zarr

    c = cube(["B04", "B08"])
    (f,) = write_result(c, "Zarr", {}, tmp_path)
    assert f.path.name == "result.zarr.zip" and f.media_type == "application/zip"
    ds = xr.open_zarr(zarr.storage.ZipStore(f.path, mode="r"), decode_coords="all")
    assert set(ds.data_vars) == {"B04", "B08"}
    assert ds["B08"].dims == ("t", "y", "x") and ds.rio.crs.to_epsg() == 32632
    np.testing.assert_array_equal(ds["B08"].values, c.data.sel(bands="B08").values)
    np.testing.assert_array_equal(ds["t"].values, c.data["t"].values)


def _single_band(height: int, width: int) -> RasterCube:
    rng = np.random.default_rng(7)
    values = rng.normal(size=(height, width)).astype("float32")
    values[rng.random((height, width)) < 0.05] = np.nan
    da = xr.DataArray(values, dims=["y", "x"], coords={
        "y": 5_000_000.0 - 10 * (np.arange(height) + 0.5),
        "x": 600_000.0 + 10 * (np.arange(width) + 0.5)}).chunk({"y": 300, "x": 300})
    return RasterCube(da, (Dimension("y", SPATIAL, "y", 32631),
                           Dimension("x", SPATIAL, "x", 32631)))


def _cog_offsets(ds) -> tuple[list[int], list[int]]:
    """(IFD offsets, first tile offsets) of the full resolution and then each overview."""
    levels = [None, *range(len(ds.overviews(1)))]
    ifds = [int(ds.get_tag_item("IFD_OFFSET", "TIFF", bidx=1, ovr=o)) for o in levels]
    tiles = [int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1, ovr=o)) for o in levels]
    return ifds, tiles


@pytest.mark.parametrize("height, width", [(1024, 1536), (1000, 1030)])
def test_gtiff_overviews_are_those_of_the_cog_driver(tmp_path, height, width) -> None:
    """The writer builds the overviews itself where that gives the COG driver's own (sizes a
    power of two times the smallest overview); the file is the driver's COG either way."""
    c = _single_band(height, width)
    cog = {"blocksize": 256, "overview_resampling": "nearest"}
    assert _scratch_overviews(width, height, cog) == ([2, 4, 8] if width == 1536 else [])
    (f,) = write_result(c, "GTiff", {"tile_size": 256}, tmp_path)
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="float32", crs="EPSG:32631", nodata=float("nan"),
                       transform=rasterio.Affine(10, 0, 600_000, 0, -10, 5_000_000)) as dst:
        dst.write(c.data.values, 1)
    reference = tmp_path / "reference.tif"
    rasterio.shutil.copy(plain, reference, driver="COG", compress="DEFLATE", level=1,
                         blocksize=256, overview_resampling="nearest")
    with rasterio.open(f.path) as ours, rasterio.open(reference) as ref:
        assert ours.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert ours.overviews(1) == ref.overviews(1) and len(ours.overviews(1)) >= 2
        np.testing.assert_array_equal(ours.read(1), c.data.values)
        for level in range(len(ref.overviews(1))):
            with rasterio.open(f.path, overview_level=level) as o, \
                    rasterio.open(reference, overview_level=level) as r:
                np.testing.assert_array_equal(o.read(1), r.read(1))
        ifds, tiles = _cog_offsets(ours)
        # COG layout: the IFDs first (after GDAL's ghost header), in order; tile data from the
        # smallest overview to the full resolution
        assert ifds == sorted(ifds) and ifds[0] < 1024 and max(ifds) < min(tiles)
        assert tiles == sorted(tiles, reverse=True)
