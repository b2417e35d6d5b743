"""load_result end to end (issue 18, profile requirement 617): a batch job's results loaded by
job id (or by their URL) in a synchronous request, in another batch job and in an XYZ map
service, through the openeo client against a real `terracube serve`; values checked against
the job's own downloaded files with numpy/rasterio. Errors: an unknown id, another user's job
and an unfinished job are openEO errors naming the argument."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.warp
import xarray as xr
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

openeo = pytest.importorskip("openeo")
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": 32632}
SMALL = {"west": 680000, "south": 5151200, "east": 680300, "north": 5151500, "crs": 32632}
JUNE = ["2022-06-01", "2022-06-20"]  # 2022-06-02, -07, -12, -17
TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(scope="module")
def con(server):
    return openeo.connect(server.url).authenticate_basic("demo", "demo")


@pytest.fixture(scope="module")
def series(con, tmp_path_factory: pytest.TempPathFactory):
    """A finished job: B04 and B08 of four dates as GTiff (one file per date), downloaded."""
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    job = s2.create_job(out_format="GTiff", title="series for load_result")
    job.start_and_wait(max_poll_interval=0.2)
    folder = tmp_path_factory.mktemp("series")
    tifs = sorted(p for p in job.get_results().download_files(folder) if p.suffix == ".tif")
    assert len(tifs) == 4
    return job, tifs


@pytest.fixture(scope="module")
def composite(con, tmp_path_factory: pytest.TempPathFactory):
    """A finished job: the maximum NDVI of June as one GTiff (no time dimension), downloaded."""
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    job = s2.ndvi(nir="B08", red="B04").max_time().create_job(out_format="GTiff")
    job.start_and_wait(max_poll_interval=0.2)
    (tif,) = [p for p in job.get_results().download_files(tmp_path_factory.mktemp("ndvi"))
              if p.suffix == ".tif"]
    return job, tif


def band(tif: Path, name: str, box: dict | None = None) -> np.ndarray:
    with rasterio.open(tif) as src:
        window = None if box is None else rasterio.windows.from_bounds(
            box["west"], box["south"], box["east"], box["north"], src.transform)
        return src.read(src.descriptions.index(name) + 1, window=window).astype("float64")


def day(tif: Path) -> str:
    return tif.name[7:17]  # openEO_2022-06-02Z.tif


def test_sync_reduce_equals_numpy_of_the_jobs_files(con, series, tmp_path: Path) -> None:
    job, tifs = series
    mean = con.load_result(job.job_id).reduce_dimension(dimension="t", reducer="mean")
    mean.download(tmp_path / "mean.nc", format="netCDF")
    with xr.open_dataset(tmp_path / "mean.nc") as ds:
        for name in ("B04", "B08"):
            expected = np.mean([band(t, name) for t in tifs], axis=0)
            np.testing.assert_allclose(ds[name].values, expected, rtol=1e-6)


def test_subsetting_by_extent_dates_and_bands(con, series, tmp_path: Path) -> None:
    job, tifs = series
    cube = con.load_result(job.job_id, spatial_extent=SMALL,
                           temporal_extent=["2022-06-05", "2022-06-15"], bands=["B08"])
    (cube * 2).download(tmp_path / "small.nc", format="netCDF")
    chosen = [t for t in tifs if "2022-06-05" <= day(t) < "2022-06-15"]
    assert [day(t) for t in chosen] == ["2022-06-07", "2022-06-12"]
    with xr.open_dataset(tmp_path / "small.nc") as ds:
        assert list(ds.data_vars.keys() - {"crs", "spatial_ref"}) == ["B08"]
        assert [str(t)[:10] for t in ds.t.values] == ["2022-06-07", "2022-06-12"]
        assert ds.sizes["x"] == 30 and ds.sizes["y"] == 30
        for i, tif in enumerate(chosen):
            np.testing.assert_array_equal(ds["B08"].values[i], 2 * band(tif, "B08", SMALL))


def test_in_a_batch_job_and_through_the_results_url(con, composite, series,
                                                    tmp_path: Path) -> None:
    job, tif = composite
    # A second job reads the first one's results: the NDVI above 0.5.
    second = (con.load_result(job.job_id) > 0.5).create_job(out_format="GTiff")
    second.start_and_wait(max_poll_interval=0.2)
    (out,) = [p for p in second.get_results().download_files(tmp_path / "second")
              if p.suffix == ".tif"]
    ndvi = band(tif, "NDVI") if "NDVI" in rasterio.open(tif).descriptions else \
        rasterio.open(tif).read(1).astype("float64")
    with rasterio.open(out) as src:
        got = src.read(1).astype("float64")
    np.testing.assert_array_equal(got, np.where(np.isnan(ndvi), got, ndvi > 0.5))
    # the second job's results say where its input came from
    links = second.get_results().get_metadata()["links"]
    assert any(lk["rel"] == "derived_from" and lk["href"].endswith(f"/jobs/{job.job_id}/results")
               for lk in links)

    # By URL: the unsigned results URL of this server (the user's own job), and the signed
    # canonical link (read as load_stac reads it).
    series_job, tifs = series
    unsigned = f"{con.root_url.rstrip('/')}/jobs/{series_job.job_id}/results"
    meta = series_job.get_results().get_metadata()
    (signed,) = [lk["href"] for lk in meta["links"] if lk["rel"] == "canonical"]
    for url, name in ((unsigned, "unsigned"), (signed, "signed")):
        con.load_result(url, spatial_extent=SMALL, bands=["B04"]).download(
            tmp_path / f"{name}.nc", format="netCDF")
        with xr.open_dataset(tmp_path / f"{name}.nc") as ds:
            assert [str(t)[:10] for t in ds.t.values] == [day(t) for t in tifs]
            for i, t in enumerate(tifs):
                np.testing.assert_array_equal(ds["B04"].values[i], band(t, "B04", SMALL))


def centre_tile(z: int) -> morecantile.Tile:
    lon, lat = pyproj.Transformer.from_crs(32632, 4326, always_xy=True).transform(680200,
                                                                                  5151500)
    return TMS.tile(lon, lat, z)


def tile_of(tif: Path, tile: morecantile.Tile, size: int = 256) -> np.ndarray:
    """The file's first band warped (bilinear) onto the tile, stretched 0..1 -> 0..255."""
    b = TMS.xy_bounds(tile)
    dst = Affine((b.right - b.left) / size, 0, b.left, 0, -(b.top - b.bottom) / size, b.top)
    out = np.full((size, size), np.nan, dtype="float32")
    with rasterio.open(tif) as src:
        rasterio.warp.reproject(
            src.read(1).astype("float32"), out, src_transform=src.transform, src_crs=src.crs,
            src_nodata=np.nan, dst_transform=dst, dst_crs="EPSG:3857", dst_nodata=np.nan,
            resampling=rasterio.warp.Resampling.bilinear)
    return np.where(np.isfinite(out), np.round(np.clip(out, 0, 1) * 255), np.nan)


def read_png(content: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.MemoryFile(io.BytesIO(content)) as mem, mem.open() as ds:
            return ds.read()


def test_xyz_service_over_load_result(con, composite) -> None:
    job, tif = composite
    service = con.load_result(job.job_id).tiled_viewing_service(
        type="XYZ", title="job results",
        configuration={"rescale": [0, 1], "resampling": "bilinear"})
    try:
        template = service.describe_service()["url"]
        t = centre_tile(15)
        r = httpx.get(template.format(z=t.z, x=t.x, y=t.y), timeout=120)
        assert r.status_code == 200, r.text
        got = read_png(r.content)
        expected = tile_of(tif, t)
        ours, theirs = got[3] == 255, np.isfinite(expected)
        assert theirs.sum() > 1000 and ours.sum() > 1000
        assert (ours != theirs).sum() <= 0.03 * theirs.sum(), ((ours != theirs).sum(),
                                                               theirs.sum())
        both = ours & theirs
        diff = np.abs(got[0][both].astype(float) - expected[both])
        assert np.median(diff) <= 1 and (diff <= 3).mean() > 0.97
    finally:
        service.delete_service()


# --- errors -----------------------------------------------------------------------------------
def post_result(server, token: str, job_id: str) -> httpx.Response:
    graph = {"lr": {"process_id": "load_result", "arguments": {"id": job_id}},
             "save": {"process_id": "save_result", "result": True,
                      "arguments": {"data": {"from_node": "lr"}, "format": "netCDF"}}}
    return httpx.post(f"{server.api}result", json={"process": {"process_graph": graph}},
                      headers={"Authorization": f"Bearer basic//{token}"}, timeout=120)


def token(server, user: str, password: str) -> str:
    r = httpx.get(f"{server.api}credentials/basic", auth=(user, password), timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def add_user(data_dir: Path, name: str, password: str) -> None:
    r = subprocess.run([sys.executable, "-m", "terracube.cli", "users", "add", name,
                        "--data-dir", str(data_dir)], input=f"{password}\n",
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items()
                            if not k.startswith("TERRACUBE_")})
    assert r.returncode == 0 or "already exists" in r.stderr, r.stderr


def test_errors(server, con, composite, sample_data_dir: Path) -> None:
    job, _ = composite
    demo = token(server, "demo", "demo")
    unknown = post_result(server, demo, "j-does-not-exist")
    assert unknown.status_code == 404 and unknown.json()["code"] == "JobNotFound"
    assert "j-does-not-exist" in unknown.json()["message"]
    assert "lr" in unknown.json()["message"] and "id" in unknown.json()["message"]

    # another user's job is as unknown as a job that does not exist: no data, no status
    add_user(sample_data_dir, "loadresult-other", "other-secret")
    other = post_result(server, token(server, "loadresult-other", "other-secret"), job.job_id)
    assert other.status_code == 404 and other.json()["code"] == "JobNotFound", other.text
    assert "finished" not in other.json()["message"]

    created = con.create_job(con.load_collection("SENTINEL2_L2A", spatial_extent=SMALL,
                                                 temporal_extent=JUNE, bands=["B04"]))
    try:
        waiting = post_result(server, demo, created.job_id)
        assert waiting.status_code == 400 and waiting.json()["code"] == "JobNotFinished"
        assert "has status 'created'" in waiting.json()["message"]
    finally:
        created.delete()

    bad = post_result(server, demo, "not a job id")
    assert bad.status_code == 400 and bad.json()["code"] == "ProcessParameterInvalid"

    # a finished job without a raster cube: what it saved is named
    numbers = con.create_job({"n": {"process_id": "add", "arguments": {"x": 1, "y": 2}},
                              "s": {"process_id": "save_result", "result": True,
                                    "arguments": {"data": {"from_node": "n"},
                                                  "format": "JSON"}}})
    numbers.start_and_wait(max_poll_interval=0.2)
    try:
        none = post_result(server, demo, numbers.job_id)
        assert none.status_code == 400 and "saved no raster data cube" in none.json()["message"]
    finally:
        numbers.delete()


def test_listed_in_processes(con) -> None:
    described = con.describe_process("load_result")
    assert [p["name"] for p in described["parameters"]] == ["id", "spatial_extent",
                                                            "temporal_extent", "bands"]


def test_netcdf_results_in_sync_and_as_tiles(con, tmp_path: Path) -> None:
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BOX,
                             temporal_extent=["2022-06-01", "2022-06-10"], bands=["B04"])
    job = s2.create_job(out_format="netCDF")
    job.start_and_wait(max_poll_interval=0.2)
    (nc,) = [p for p in job.get_results().download_files(tmp_path / "job") if p.suffix == ".nc"]
    con.load_result(job.job_id).reduce_dimension(dimension="t", reducer="max").download(
        tmp_path / "max.nc", format="netCDF")
    with xr.open_dataset(nc) as want, xr.open_dataset(tmp_path / "max.nc") as got:
        np.testing.assert_array_equal(got["B04"].values, want["B04"].max("t").values)

    service = con.load_result(job.job_id).max_time().tiled_viewing_service(
        type="XYZ", configuration={"rescale": [0, 3000]})
    try:
        template = service.describe_service()["url"]
        inside, beside = centre_tile(15), morecantile.Tile(x=100, y=100, z=15)
        r = httpx.get(template.format(z=15, x=inside.x, y=inside.y), timeout=120)
        assert r.status_code == 200, r.text
        shown = read_png(r.content)
        assert (shown[3] == 255).sum() > 1000
        # a tile beside the results is empty, not an error (the job's footprint is known)
        r = httpx.get(template.format(z=15, x=beside.x, y=beside.y), timeout=120)
        assert r.status_code == 200 and (read_png(r.content)[3] == 0).all()
    finally:
        service.delete_service()
