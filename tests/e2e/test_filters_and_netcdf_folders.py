"""Property filters that reach a STAC API, and a folder of NetCDF files as one collection, end to
end: `terracube collections add` while a server runs, the openeo client loads through the HTTP
API, and the values are compared with rasterio/xarray reading the original files."""

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
from tests.support.data import data_dir_with_samples
from tests.support.filtering_stac_api import FilteringStacApi
from tests.support.processes import ServerProcess
from tests.support.real_data import (
    BELGIUM_CLOUD_COVER,
    BELGIUM_STAC,
    OSTIA,
    need,
    write_belgium_catalog,
    write_era5_netcdf,
)

openeo = pytest.importorskip("openeo")
pytestmark = pytest.mark.e2e

BOX = {"west": 644600, "south": 5676240, "east": 644680, "north": 5676300, "crs": 32631}
TIFS = {"2023-06-01": BELGIUM_STAC / "openEO_2023-06-01Z.tif",
        "2023-06-04": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-04Z.tif",
        "2023-06-06": BELGIUM_STAC / "sub-folder" / "openEO_2023-06-06Z.tif"}
# Made-up platforms for the three Belgian items (the originals have none).
PLATFORM = {"2023-06-01": "sentinel-2a", "2023-06-04": "sentinel-2b",
            "2023-06-06": "sentinel-2b"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, sample_data_dir: Path) -> Path:
    return data_dir_with_samples(tmp_path_factory.mktemp("filters-and-folders"), sample_data_dir)


@pytest.fixture(scope="module")
def server(data_dir: Path):
    srv = ServerProcess(data_dir, {"TERRACUBE_WORKERS": "0"})  # no batch jobs here
    yield srv
    srv.stop()


def add(data_dir: Path, collection_id: str, origin: Path | str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "terracube.cli", "collections", "add", collection_id, "--from",
         str(origin), "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def window(tif: Path, band: int) -> np.ndarray:
    with rasterio.open(tif) as ds:
        w = rasterio.windows.from_bounds(BOX["west"], BOX["south"], BOX["east"], BOX["north"],
                                         ds.transform)
        return ds.read(band, window=w).astype("float32")


def test_property_filters_reach_the_stac_api(con, data_dir: Path, tmp_path: Path) -> None:
    catalog = write_belgium_catalog(tmp_path / "stac")
    for item_file in (catalog.parent / "items").glob("*.json"):
        item = json.loads(item_file.read_text())
        item["properties"]["platform"] = PLATFORM[item["properties"]["datetime"][:10]]
        item_file.write_text(json.dumps(item))
    api = FilteringStacApi(catalog, tmp_path / "searches.jsonl")
    try:
        url = f"{api.url}/collections/belgium-rgb"
        assert "(stac-api)" in add(data_dir, "BELGIUM_FILTERED", url)

        properties = {"eo:cloud_cover": lambda v: v <= 20,
                      "platform": lambda v: v == "sentinel-2b"}
        days = [d for d in sorted(PLATFORM)
                if BELGIUM_CLOUD_COVER[d] <= 20 and PLATFORM[d] == "sentinel-2b"]
        assert days == ["2023-06-06"]
        cube = con.load_collection("BELGIUM_FILTERED", spatial_extent=BOX, bands=["B02"],
                                   properties=properties)
        cube.download(tmp_path / "filtered.nc", format="netCDF")
        search = api.searches()[-1]
        assert search["params"]["filter"] == {"op": "and", "args": [
            {"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]},
            {"op": "=", "args": [{"property": "platform"}, "sentinel-2b"]}]}
        assert search["matched"] == 1
        with xr.open_dataset(tmp_path / "filtered.nc") as ds:
            assert [str(t)[:10] for t in ds.t.values] == days
            np.testing.assert_array_equal(ds["B02"].values[0], window(TIFS[days[0]], 3))

        # load_stac of the same API collection: the filter is sent there too.
        cube = con.load_stac(url, spatial_extent=BOX, bands=["B04"],
                             properties={"eo:cloud_cover": lambda v: v < 50})
        cube.download(tmp_path / "load_stac.nc", format="netCDF")
        assert api.searches()[-1]["params"]["filter"] == \
            {"op": "<", "args": [{"property": "eo:cloud_cover"}, 50]}
        clear = [d for d, c in sorted(BELGIUM_CLOUD_COVER.items()) if c < 50]
        with xr.open_dataset(tmp_path / "load_stac.nc") as ds:
            assert [str(t)[:10] for t in ds.t.values] == clear
            for i, day in enumerate(clear):
                np.testing.assert_array_equal(ds["B04"].values[i], window(TIFS[day], 1))
    finally:
        api.stop()


def split_per(src: Path, folder: Path, group: str, name: str) -> Path:
    folder.mkdir(parents=True)
    with xr.open_dataset(src) as ds:
        for label, part in ds.groupby(group):
            part.to_netcdf(folder / name.format(label=label))
    return folder


def test_a_folder_of_netcdf_files_is_one_collection(con, server, data_dir: Path,
                                                    tmp_path: Path) -> None:
    era5 = write_era5_netcdf(tmp_path / "era5.nc")
    days = split_per(era5, tmp_path / "era5-days", "time.day", "era5_2019-03-{label:02d}.nc")
    out = add(data_dir, "ERA5_DAILY_FILES", days)
    assert "(cube)" in out and "time 2019-03-01T00:00:00Z to 2019-03-31T23:00:00Z" in out
    meta = httpx.get(f"{server.api}collections/ERA5_DAILY_FILES").json()
    assert meta["cube:dimensions"]["t"]["step"] == "PT1H"

    box = {"west": -3.1, "south": 51.4, "east": -1.4, "north": 52.6}
    cube = con.load_collection("ERA5_DAILY_FILES", spatial_extent=box,
                               temporal_extent=["2019-03-14T18:00:00Z",
                                                "2019-03-16T06:00:00Z"])
    cube.download(tmp_path / "era5_days.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "era5_days.nc") as got, xr.open_dataset(era5) as ref:
        want = ref["t2m"].sel(time=slice("2019-03-14T18:00", "2019-03-16T05:00"),
                              longitude=slice(-3.1, -1.4), latitude=slice(52.6, 51.4))
        assert got.sizes["t"] == 36
        np.testing.assert_array_equal(got["t2m"].values, want.values)
        np.testing.assert_array_equal(got.t.values, want.time.values)
        np.testing.assert_allclose(got.x.values, want.longitude.values)
        np.testing.assert_allclose(got.y.values, want.latitude.values)

    years = split_per(need(OSTIA), tmp_path / "ostia-years", "time.year", "sst_{label}.nc")
    add(data_dir, "OSTIA_YEARS", years)
    cube = con.load_collection("OSTIA_YEARS", spatial_extent={
        "west": -170, "south": -3, "east": -120, "north": 3},
        temporal_extent=["2008-11-01", "2009-03-01"])
    cube.download(tmp_path / "ostia_years.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "ostia_years.nc") as got, xr.open_dataset(OSTIA) as ref:
        want = ref["surface_temperature"].sel(time=slice("2008-11-01", "2009-02-28"),
                                              longitude=slice(190, 240),
                                              latitude=slice(-3, 3))
        assert got.sizes["t"] == 4
        np.testing.assert_array_equal(got["surface_temperature"].values,
                                      want.values[:, ::-1, :])
        np.testing.assert_allclose(got.x.values, want.longitude.values - 360, atol=1e-4)

    bad = tmp_path / "mixed"
    split_per(need(OSTIA), bad, "time.year", "sst_{label}.nc")
    with xr.open_dataset(bad / "sst_2009.nc") as ds:
        cropped = ds.isel(latitude=slice(1, None)).load()
    (bad / "sst_2009.nc").unlink()
    cropped.to_netcdf(bad / "sst_2009.nc")
    done = subprocess.run(
        [sys.executable, "-m", "terracube.cli", "collections", "add", "MIXED", "--from",
         str(bad), "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert f"{bad / 'sst_2009.nc'}: the grid differs from that of" in done.stderr
