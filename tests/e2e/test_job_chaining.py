"""Issue 11, defect 16: one job's results feed the next — `connection.load_stac(<signed results
URL>)` of a finished job reads every raster format a job writes (GTiff per date, netCDF,
Zarr), with its extents and bands applied; values checked against the sample files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.support.data import sample_band

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
JUNE = ["2022-06-01", "2022-06-20"]  # 2022-06-02, -07, -12, -17
LATER = ["2022-06-05", "2022-06-15"]  # 2022-06-07, -12


def results_url(job) -> str:
    """The signed canonical link of the job's results, as CDSE users pass it on."""
    links = job.get_results().get_metadata()["links"]
    (url,) = [link["href"] for link in links if link["rel"] == "canonical"]
    return url


def run(cube, fmt: str):
    job = cube.create_job(out_format=fmt)
    job.start_and_wait(max_poll_interval=0.2)
    return job


@pytest.mark.parametrize("fmt", ["netCDF", "Zarr", "GTiff"])
def test_load_stac_of_results_in_every_raster_format(con, sample_data_dir: Path,
                                                     tmp_path: Path, fmt: str) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    url = results_url(run(s2, fmt))
    again = con.load_stac(url, spatial_extent=SMALL, temporal_extent=LATER, bands=["B08"])
    again.download(tmp_path / "again.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "again.nc") as ds:
        assert [str(t)[:10] for t in ds.t.values] == ["2022-06-07", "2022-06-12"]
        assert list(ds.data_vars.keys() - {"spatial_ref", "crs"}) == ["B08"]
        for i, day in enumerate(["2022-06-07", "2022-06-12"]):
            expected = sample_band(sample_data_dir, day, "B08", SMALL).astype("float64")
            got = ds["B08"].values[i].astype("float64")
            np.testing.assert_array_equal(np.nan_to_num(got), expected)


def test_a_chain_of_three_jobs(con, sample_data_dir: Path, tmp_path: Path) -> None:
    # job 1: NDVI per date as netCDF; job 2: its maximum over time, from job 1's results,
    # as GTiff; job 3 reads job 2's results and thresholds them.
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    first = run(s2.ndvi(nir="B08", red="B04", target_band="NDVI"), "netCDF")
    ndvi = con.load_stac(results_url(first), bands=["NDVI"])
    second = run(ndvi.reduce_dimension(dimension="t", reducer="max"), "GTiff")
    greenest = con.load_stac(results_url(second))
    (greenest.band("NDVI") > 0.5).download(tmp_path / "green.nc", format="netCDF")

    days = ["2022-06-02", "2022-06-07", "2022-06-12", "2022-06-17"]
    stack = []
    for day in days:
        red = sample_band(sample_data_dir, day, "B04", BOX).astype("float64")
        nir = sample_band(sample_data_dir, day, "B08", BOX).astype("float64")
        red[red == 0] = np.nan
        nir[nir == 0] = np.nan
        stack.append((nir - red) / (nir + red))
    with np.errstate(all="ignore"):
        expected = np.nanmax(np.stack(stack), axis=0) > 0.5
    with xr.open_dataset(tmp_path / "green.nc") as ds:
        # load_stac gives the composite the item's date (a time dimension of one label)
        var = [v for v in ds.data_vars if ds[v].ndim >= 2][0]
        got = ds[var].squeeze().values
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got.astype(bool), expected)


def test_chaining_on_a_server_with_default_fetch_rules(sample_data_dir: Path, tmp_path: Path,
                                                       start_server) -> None:
    """`make run` allows no local fetches, yet a job's signed results link on this server
    itself is readable with load_stac; other ports of the same host stay refused."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(sample_data_dir / "samples", data / "samples")
    srv = start_server(data, {"TERRACUBE_FETCH_ALLOWED_HOSTS": "[]"})
    con = openeo.connect(srv.url).authenticate_basic("demo", "demo")
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL, temporal_extent=JUNE,
                             bands=["B08"])
    url = results_url(run(s2, "GTiff"))
    again = con.load_stac(url, spatial_extent=SMALL, temporal_extent=LATER, bands=["B08"])
    again.download(tmp_path / "again.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "again.nc") as ds:
        got = ds["B08"].values
    want = np.stack([sample_band(sample_data_dir, day, "B08", SMALL)
                     for day in ("2022-06-07", "2022-06-12")]).astype(float)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want)

    other_port = srv.port + 1 if srv.port < 65535 else srv.port - 1
    refused = con.load_stac(f"http://127.0.0.1:{other_port}/item.json")
    with pytest.raises(openeo.rest.OpenEoApiError) as err:
        refused.download(tmp_path / "x.nc", format="netCDF")
    assert "not a public internet address" in err.value.message
