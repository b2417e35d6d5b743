"""A folder of NetCDF files as one collection along time (netcdf_zarr_inspect.inspect_folder,
netcdf_zarr_source.XarraySource; registry.inspect_source).

The folders are made from real files: OSTIA monthly SST split per year (files of 9 and 12
months, longitudes 0…360, latitudes stored south to north) and the ERA5 2 m temperature split
per day (int16 packed, each file with its own time units). Loads are compared with xarray
reading the original single file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.support.real_data import ERA5_SCALE, OSTIA, era5_from_grib, need, write_era5_netcdf

from terracube.catalog.metadata import CollectionInputError
from terracube.catalog.netcdf_zarr_source import XarraySource
from terracube.catalog.registry import add_collection, source_from_record
from terracube.catalog.stac_items import NoDataForRequest
from terracube.datacube.request import BBox, LoadRequest


def split_by(src: Path, folder: Path, group: str, name: str, units: str | None = None) -> Path:
    """One NetCDF file per `group` (e.g. "time.year") of the original, encoding kept."""
    folder.mkdir(parents=True, exist_ok=True)
    with xr.open_dataset(src) as ds:
        for label, part in ds.groupby(group):
            part = part.copy()
            if units:  # each file counts its hours from its own day, as daily downloads do
                part.time.encoding["units"] = units.format(label=label)
            part.to_netcdf(folder / name.format(label=label))
    return folder


@pytest.fixture(scope="module")
def ostia_years(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ostia") / "years"
    return split_by(need(OSTIA), folder, "time.year", "ostia_{label}.nc")


@pytest.fixture(scope="module")
def era5_single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_era5_netcdf(tmp_path_factory.mktemp("era5") / "era5.nc")


@pytest.fixture(scope="module")
def era5_days(era5_single: Path) -> Path:
    folder = era5_single.parent / "days"
    # Daily files in sub-folders per week: the folder is searched recursively.
    split_by(era5_single, folder, "time.day", "day_{label:02d}.nc",
             units="hours since 2019-03-{label:02d} 00:00:00")
    for f in sorted(folder.glob("*.nc")):
        week = folder / f"week{(int(f.stem[4:]) - 1) // 7 + 1}"
        week.mkdir(exist_ok=True)
        f.rename(week / f.name)
    return folder


def added(tmp_path: Path, cid: str, origin: Path, **kwargs) -> XarraySource:
    record = add_collection(tmp_path / "data", cid, str(origin), **kwargs)
    assert record["type"] == "cube"
    source = source_from_record(record)
    assert isinstance(source, XarraySource)
    return source


def test_ostia_split_per_year_is_one_cube(ostia_years: Path, tmp_path: Path) -> None:
    source = added(tmp_path, "OSTIA_YEARS", ostia_years)
    lay = source.layout
    assert [Path(f).name for f in lay.files] == [f"ostia_{y}.nc" for y in range(2006, 2011)]
    assert lay.time_count == 54 and lay.time_step == "P1M"
    doc = source.stac()
    assert doc["cube:dimensions"]["t"]["extent"] == ["2006-04-16T00:00:00Z",
                                                     "2010-09-16T00:00:00Z"]
    assert "5 NetCDF files" in doc["description"]
    # Across three files; west of the date line in -180…180 (190…240 in the files).
    cube = source.load(LoadRequest(bbox=BBox(-170, -3, -120, 3),
                                   temporal_extent=("2007-06-01", "2009-02-01")))
    with xr.open_dataset(OSTIA) as ds:
        ref = ds["surface_temperature"].sel(time=slice("2007-06-01", "2009-01-31"),
                                            longitude=slice(190, 240),
                                            latitude=slice(-3, 3))
        ref = ref.isel(latitude=slice(None, None, -1))  # the cube runs north to south
        assert cube.data.sizes == {"t": 20, "bands": 1, "y": ref.sizes["latitude"],
                                   "x": ref.sizes["longitude"]}
        np.testing.assert_array_equal(cube.data.t.values, ref.time.values)
        np.testing.assert_allclose(cube.data.x.values, ref.longitude.values - 360, atol=1e-4)
        np.testing.assert_allclose(cube.data.y.values, ref.latitude.values)
        np.testing.assert_array_equal(cube.data.values[:, 0], ref.values)
    # One file only: the others are not even opened.
    one = source.load(LoadRequest(temporal_extent=("2010-03-01", "2010-04-01")))
    assert [str(t)[:10] for t in one.data.t.values] == ["2010-03-16"]
    with pytest.raises(NoDataForRequest, match="2006-04-16T00:00:00Z to 2010-09-16"):
        source.load(LoadRequest(temporal_extent=("2011-01-01", None)))
    # Between two files' time spans but on no date.
    with pytest.raises(NoDataForRequest):
        source.load(LoadRequest(temporal_extent=("2006-12-20", "2007-01-10")))


def test_era5_daily_files_with_their_own_time_units(era5_days: Path, era5_single: Path,
                                                    tmp_path: Path) -> None:
    source = added(tmp_path, "ERA5_DAYS", era5_days)
    assert len(source.layout.files) == 31 and source.layout.time_step == "PT1H"
    assert source.layout.variables[0].scale_factor == ERA5_SCALE
    box = BBox(-3.1, 51.4, -1.4, 52.6)
    cube = source.load(LoadRequest(bbox=box, temporal_extent=("2019-03-09T20:00:00Z",
                                                              "2019-03-11T03:00:00Z")))
    assert cube.data.sizes["t"] == 31
    with xr.open_dataset(era5_single) as ds:
        ref = ds["t2m"].sel(time=slice("2019-03-09T20:00", "2019-03-11T02:00"),
                            longitude=slice(-3.1, -1.4), latitude=slice(52.6, 51.4))
        np.testing.assert_array_equal(cube.data.values[:, 0], ref.values)
        np.testing.assert_array_equal(cube.data.t.values, ref.time.values)
    grib = era5_from_grib()
    first = int(np.flatnonzero(grib["times"] == np.datetime64("2019-03-09T20:00:00"))[0])
    rows = np.flatnonzero((grib["lat"] >= 51.4) & (grib["lat"] <= 52.6))
    cols = np.flatnonzero((grib["lon"] >= -3.1) & (grib["lon"] <= -1.4))
    expected = grib["values"][first:first + 31, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    np.testing.assert_allclose(cube.data.values[:, 0], expected, atol=ERA5_SCALE / 2 + 1e-4)


# --- refused when added -----------------------------------------------------------------------
def edit_copy(src_folder: Path, folder: Path, name: str, change) -> Path:
    """A copy of the folder in which the file `name` is rewritten as change(dataset)."""
    shutil.copytree(src_folder, folder)
    target = folder / name
    with xr.open_dataset(target) as ds:
        changed = change(ds.load())
    changed.encoding.pop("unlimited_dims", None)
    target.unlink()
    changed.to_netcdf(target)
    return target


def test_a_file_on_another_grid_is_named(ostia_years: Path, tmp_path: Path) -> None:
    bad = edit_copy(ostia_years, tmp_path / "f", "ostia_2008.nc",
                    lambda ds: ds.isel(longitude=slice(0, 400)))
    with pytest.raises(CollectionInputError, match=rf"{bad}: the grid differs from that of "
                       r".*ostia_2006.nc \(400 x 18 pixels"):
        add_collection(tmp_path / "data", "BAD", str(bad.parent))


def test_a_file_without_the_variable_is_named(ostia_years: Path, tmp_path: Path) -> None:
    bad = edit_copy(ostia_years, tmp_path / "f", "ostia_2009.nc",
                    lambda ds: ds.rename(surface_temperature="sst"))
    with pytest.raises(CollectionInputError,
                       match=rf"{bad}: no variable\(s\) surface_temperature; the data "
                       "variables are sst"):
        add_collection(tmp_path / "data", "BAD", str(bad.parent))


def test_a_file_without_a_time_axis_is_named(ostia_years: Path, tmp_path: Path) -> None:
    bad = edit_copy(ostia_years, tmp_path / "f", "ostia_2010.nc",
                    lambda ds: ds.isel(time=0, drop=True))
    with pytest.raises(CollectionInputError, match=rf"{bad}: no time dimension"):
        add_collection(tmp_path / "data", "BAD", str(bad.parent))


def test_a_file_in_another_crs_is_named(era5_days: Path, tmp_path: Path) -> None:
    def other_sphere(ds: xr.Dataset) -> xr.Dataset:
        ds["crs"].attrs["earth_radius"] = 6371229.0
        return ds

    bad = edit_copy(era5_days, tmp_path / "f", "week2/day_09.nc", other_sphere)
    with pytest.raises(CollectionInputError, match=rf"{bad}: the CRS differs"):
        add_collection(tmp_path / "data", "BAD", str(tmp_path / "f"))


def test_the_same_dates_in_two_files_are_refused(ostia_years: Path, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    shutil.copytree(ostia_years, folder)
    shutil.copy(folder / "ostia_2007.nc", folder / "ostia_2007_again.nc")
    with pytest.raises(CollectionInputError, match=r"ostia_2007.*overlap those of .*ostia_2007"):
        add_collection(tmp_path / "data", "BAD", str(folder))
    with pytest.raises(CollectionInputError, match="--pattern applies to folders of raster"):
        add_collection(tmp_path / "data", "BAD", str(ostia_years), pattern="{date}.nc")
