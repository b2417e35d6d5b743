"""CF NetCDF files and Zarr stores as collections (catalog/netcdf_zarr_inspect.py and
netcdf_zarr_source.py), on real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from pyproj import CRS
from tests.support.real_data import (
    ERA5_SCALE,
    GEBCO,
    OISST,
    OSTIA,
    STAGE_IV,
    era5_from_grib,
    need,
    write_era5_netcdf,
    write_era5_zarr,
)

from terracube.catalog.metadata import CollectionInputError
from terracube.catalog.netcdf_zarr_inspect import CubeLayout
from terracube.catalog.netcdf_zarr_source import XarraySource, cube_source
from terracube.catalog.stac_items import NoDataForRequest
from terracube.datacube.cube import is_lazy
from terracube.datacube.request import BBox, LoadRequest


def test_ostia_crs_from_grid_mapping_monthly_steps_and_longitudes_from_0_to_360() -> None:
    src = cube_source("OSTIA", need(OSTIA))
    lay = src.layout
    with xr.open_dataset(OSTIA) as ds:
        expected_crs = CRS.from_cf(ds["latitude_longitude"].attrs)
        assert CRS.from_user_input(lay.crs) == expected_crs  # a sphere, not WGS 84
        doc = src.stac()
        assert doc["cube:dimensions"]["t"]["step"] == "P1M"
        assert doc["cube:dimensions"]["bands"]["values"] == ["surface_temperature"]
        assert lay.lon_wrap and lay.y_ascending
        # The Niño 3.4 box (170°W-120°W) lies at 190…240° in the file.
        cube = src.load(LoadRequest(bbox=BBox(-170, -5, -120, 5, 4326),
                                    temporal_extent=("2007-01-01", "2007-04-01")))
        assert is_lazy(cube)
        expected = ds["surface_temperature"].sel(
            longitude=slice(190, 240), latitude=slice(-5, 5),
            time=slice("2007-01-01", "2007-03-31"))
        got = cube.data.isel(bands=0)
        assert got.sizes["t"] == 3 and got.sizes["x"] == expected.sizes["longitude"]
        np.testing.assert_allclose(got.x.values, expected.longitude.values - 360, atol=1e-4)
        np.testing.assert_allclose(got.y.values, expected.latitude.values[::-1], atol=1e-6)
        np.testing.assert_array_equal(got.values, expected.values[:, ::-1, :])
        # A box across the prime meridian takes both ends of the file.
        cube = src.load(LoadRequest(bbox=BBox(-3, -1, 3, 1, 4326),
                                    temporal_extent=("2006-04-01", "2006-05-01")))
        west = ds["surface_temperature"].isel(time=0).sel(longitude=slice(357, 360),
                                                          latitude=slice(-1, 1))
        east = ds["surface_temperature"].isel(time=0).sel(longitude=slice(0, 3),
                                                          latitude=slice(-1, 1))
        np.testing.assert_array_equal(
            cube.data.values[0, 0], np.concatenate([west.values, east.values], axis=1)[::-1])


def test_packed_values_are_unpacked_and_fill_values_are_nan() -> None:
    src = cube_source("OISST", need(OISST))
    assert src.layout.squeeze == ["zlev"]
    assert src.layout.bands == ["sst", "anom", "err", "ice"]
    sst = src.bands["sst"]
    assert (sst.stored_type, sst.scale_factor, sst.fill_value) == ("int16", 0.01, -999.0)
    cube = src.load(LoadRequest(bbox=BBox(-60, -60, 20, 80, 4326), bands=("sst", "ice")))
    assert [d.name for d in cube.dimensions] == ["t", "bands", "y", "x"]
    with xr.open_dataset(OISST) as ds:
        lon = np.where(ds.lon.values >= 180, ds.lon.values - 360, ds.lon.values)
        for band in ("sst", "ice"):
            v = ds[band].isel(time=0, zlev=0).assign_coords(lon=lon).sortby("lon") \
                .sortby("lat", ascending=False).sel(lon=slice(-60, 20), lat=slice(80, -60))
            got = cube.data.sel(bands=band).values[0]
            np.testing.assert_array_equal(got, v.values.astype("float32"))
    assert np.isnan(cube.data.sel(bands="sst").values).any()  # land is _FillValue -> NaN


def test_dem_with_a_dangling_grid_mapping_is_wgs84_and_has_no_time() -> None:
    import netCDF4

    src = cube_source("GEBCO", need(GEBCO))
    assert src.layout.crs == "EPSG:4326" and src.layout.t is None
    assert "t" not in src.stac()["cube:dimensions"]
    cube = src.load(LoadRequest(bbox=BBox(74.0, 42.0, 74.1, 42.05, 4326)))
    assert [d.name for d in cube.dimensions] == ["bands", "y", "x"]
    assert cube.data.dtype == np.float32
    # A small window of a 2014 x 4398 grid: the lazy graph holds only that window.
    assert cube.data.nbytes < 20_000
    with netCDF4.Dataset(GEBCO) as nc:
        lat, lon = nc["lat"][:], nc["lon"][:]
        rows = np.flatnonzero((lat >= 42.0) & (lat <= 42.05))
        cols = np.flatnonzero((lon >= 74.0) & (lon <= 74.1))
        raw = nc["elevation"][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    np.testing.assert_array_equal(cube.data.values[0], raw[::-1].astype("float32"))
    np.testing.assert_allclose(cube.data.y.values, lat[rows][::-1])


def test_era5_netcdf_and_zarr_give_the_values_of_the_grib(tmp_path: Path) -> None:
    grib = era5_from_grib()
    nc = cube_source("ERA5_NC", write_era5_netcdf(tmp_path / "era5.nc"))
    zarr = cube_source("ERA5_ZARR", write_era5_zarr(tmp_path / "era5.zarr"))
    assert zarr.layout.engine == "zarr" and zarr.layout.crs == "EPSG:4326"
    # The NetCDF's grid_mapping is GRIB's sphere.
    assert CRS.from_user_input(nc.layout.crs).ellipsoid.semi_major_metre == grib["radius"]
    assert nc.stac()["cube:dimensions"]["t"]["step"] == "PT1H"
    request = LoadRequest(bbox=BBox(-3.1, 51.4, -1.4, 52.6, 4326),
                          temporal_extent=("2019-03-10T06:00:00Z", "2019-03-10T12:00:00Z"))
    rows = np.flatnonzero((grib["lat"] >= 51.4) & (grib["lat"] <= 52.6))
    cols = np.flatnonzero((grib["lon"] >= -3.1) & (grib["lon"] <= -1.4))
    first = int(np.flatnonzero(grib["times"] == np.datetime64("2019-03-10T06:00:00"))[0])
    expected = grib["values"][first:first + 6, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    for src, atol in ((nc, ERA5_SCALE / 2 + 1e-4), (zarr, 1e-4)):
        cube = src.load(request)
        assert cube.data.sizes == {"t": 6, "bands": 1, "y": len(rows), "x": len(cols)}
        np.testing.assert_allclose(cube.data.values[:, 0], expected, atol=atol)
        np.testing.assert_allclose(cube.data.x.values, grib["lon"][cols])
        np.testing.assert_allclose(cube.data.y.values, grib["lat"][rows])
        assert str(cube.data.t.values[0])[:19] == "2019-03-10T06:00:00"


def test_layout_survives_the_record_round_trip() -> None:
    src = cube_source("OSTIA", need(OSTIA))
    again = XarraySource("OSTIA", CubeLayout.from_record(src.layout.to_record()))
    assert again.stac() == src.stac()


def test_cubes_that_cannot_be_placed_are_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(CollectionInputError, match=r"test_stageiv_xyt\.nc: .*curvilinear"):
        cube_source("X", need(STAGE_IV))
    # projected axes without any CRS
    ds = xr.Dataset({"v": (("y", "x"), np.zeros((3, 4), "float32"))},
                    coords={"x": ("x", [0.0, 10, 20, 30], {"units": "m"}),
                            "y": ("y", [30.0, 20, 10], {"units": "m"})})
    ds.to_netcdf(tmp_path / "nocrs.nc")
    with pytest.raises(CollectionInputError, match=r"nocrs\.nc: no CRS for 'v'"):
        cube_source("X", tmp_path / "nocrs.nc")
    # times in units nobody can read
    ds = xr.Dataset({"v": (("time", "lat", "lon"), np.zeros((2, 2, 2), "float32"))},
                    coords={"time": ("time", [0, 1], {"units": "fortnights since 2000-01-01"}),
                            "lat": ("lat", [1.0, 2.0], {"units": "degrees_north"}),
                            "lon": ("lon", [1.0, 2.0], {"units": "degrees_east"})})
    ds.to_netcdf(tmp_path / "times.nc")
    with pytest.raises(CollectionInputError, match=r"times\.nc: cannot decode the dates of "
                                                   r"'time' \(units 'fortnights"):
        cube_source("X", tmp_path / "times.nc")
    # an uneven axis
    ds = xr.Dataset({"v": (("lat", "lon"), np.zeros((2, 3), "float32"))},
                    coords={"lat": ("lat", [1.0, 2.0], {"units": "degrees_north"}),
                            "lon": ("lon", [1.0, 2.0, 4.0], {"units": "degrees_east"})})
    ds.to_netcdf(tmp_path / "uneven.nc")
    with pytest.raises(CollectionInputError, match=r"uneven\.nc: inconsistent grid: the axis "
                                                   r"'lon' is not evenly spaced"):
        cube_source("X", tmp_path / "uneven.nc")


def test_a_box_outside_or_a_time_outside_is_no_data() -> None:
    src = cube_source("OSTIA", need(OSTIA))
    with pytest.raises(NoDataForRequest, match="does not intersect"):
        src.load(LoadRequest(bbox=BBox(10, 40, 11, 41, 4326)))
    with pytest.raises(NoDataForRequest, match="temporal extent"):
        src.load(LoadRequest(temporal_extent=("2020-01-01", None)))
