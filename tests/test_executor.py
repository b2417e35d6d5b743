"""The executor: local threads or a dask.distributed cluster, same results either way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr

from terracube.datacube.cube import BANDS, SPATIAL, TEMPORAL, Dimension, RasterCube
from terracube.executor import Executor, current, local_threads, progress_to
from terracube.results.writers import write_result
from terracube.settings import Settings

distributed = pytest.importorskip("distributed")


def cube() -> RasterCube:
    rng = np.random.default_rng(7)
    values = rng.uniform(-1, 1, (3, 2, 300, 200)).astype("float32")
    values[0, 0, :10, :10] = np.nan
    data = xr.DataArray(
        dsa.from_array(values, chunks=(1, 1, 128, 128)), dims=["t", "bands", "y", "x"],
        coords={"t": pd.to_datetime(["2022-06-01", "2022-06-06", "2022-06-11"]).values,
                "bands": ["B04", "B08"], "y": 5200005.0 - 10 * np.arange(300),
                "x": 600005.0 + 10 * np.arange(200)})
    dims = (Dimension("t", TEMPORAL), Dimension("bands", BANDS),
            Dimension("y", SPATIAL, "y", 32632), Dimension("x", SPATIAL, "x", 32632))
    return RasterCube(data, dims)


def test_local_executor_is_the_default_and_sized_to_the_machine() -> None:
    executor = Executor.from_settings(Settings(dask_scheduler=None, memory_limit=None))
    assert not executor.distributed
    assert executor.threads == local_threads() >= 1
    assert current() is not executor  # not active yet: the process-wide fallback
    with executor.active():
        assert current() is executor
    assert current() is not executor


def test_a_memory_limit_gives_an_in_process_cluster_with_that_limit(tmp_path: Path) -> None:
    executor = Executor.from_settings(Settings(dask_scheduler=None, memory_limit="1GB"))
    try:
        assert executor.distributed
        (worker,) = executor.client.scheduler_info()["workers"].values()
        assert worker["memory_limit"] == 10**9
        progress: list[float] = []
        with executor.active(), progress_to(progress.append):
            # the workers of the in-process cluster write the blocks themselves
            path = write_result(cube(), "GTiff", {}, tmp_path / "tif")[0].path
            nc = write_result(cube(), "netCDF", {}, tmp_path / "nc")[0].path
        assert progress and progress[-1] == 1.0
        values = cube().data.values
        with rasterio.open(path) as ds:
            assert ds.count == 6
            np.testing.assert_array_equal(ds.read().reshape(values.shape), values)
        with xr.open_dataset(nc) as ds:
            np.testing.assert_array_equal(ds["B04"].values, values[:, 0])
            np.testing.assert_array_equal(ds["B08"].values, values[:, 1])
    finally:
        executor.close()


@pytest.mark.timeout(120)
def test_a_server_process_near_its_memory_limit_still_computes(tmp_path: Path) -> None:
    """The in-process worker measures the whole process: memory the server holds itself
    (here 900 MB of ballast against a 1 GB limit) must not pause it forever."""
    ballast = np.ones(900 * 2**20 // 8)
    executor = Executor.from_settings(Settings(dask_scheduler=None, memory_limit="1GB"))
    try:
        with executor.active():
            path = write_result(cube(), "GTiff", {}, tmp_path)[0].path
        with rasterio.open(path) as ds:
            np.testing.assert_array_equal(ds.read().reshape(cube().data.shape),
                                          cube().data.values)
    finally:
        executor.close()
    assert ballast[-1] == 1.0


def test_progress_is_reported_up_to_one() -> None:
    seen: list[float] = []
    x = dsa.ones((400, 400), chunks=50)
    (total,) = Executor().compute(x.sum(), progress=seen.append)
    assert total == 160000
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)


def test_progress_of_a_writer_goes_to_the_callback_of_progress_to(tmp_path: Path) -> None:
    seen: list[float] = []
    with Executor().active(), progress_to(seen.append):
        write_result(cube(), "netCDF", {}, tmp_path)
    assert seen and seen[-1] == 1.0


@pytest.fixture(scope="module")
def in_process_cluster():
    """A real dask.distributed cluster (scheduler + worker threads in this process)."""
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster, set_as_default=False)
    yield Executor(client=client)
    client.close()
    cluster.close()


@pytest.mark.parametrize("fmt", ["GTiff", "netCDF", "JSON"])
def test_writers_give_the_same_file_on_a_cluster(fmt: str, in_process_cluster,
                                                 tmp_path: Path) -> None:
    with Executor().active():
        local = write_result(cube(), fmt, {}, tmp_path / "local")[0].path
    progress: list[float] = []
    with in_process_cluster.active():
        remote = write_result(cube(), fmt, {}, tmp_path / "remote")[0].path
        in_process_cluster.store([dsa.ones((10, 10), chunks=5)], [np.zeros((10, 10))],
                                 progress=progress.append)
    assert progress[-1] == 1.0
    if fmt == "GTiff":
        with rasterio.open(local) as a, rasterio.open(remote) as b:
            pa, pb = dict(a.profile), dict(b.profile)
            assert np.isnan(pa.pop("nodata")) and np.isnan(pb.pop("nodata"))
            assert pa == pb
            np.testing.assert_array_equal(a.read(), b.read())
    elif fmt == "netCDF":
        with xr.open_dataset(local, decode_coords="all") as a, \
                xr.open_dataset(remote, decode_coords="all") as b:
            xr.testing.assert_identical(a, b)
            assert a.rio.crs.to_epsg() == 32632
            np.testing.assert_array_equal(
                a["B08"].values, cube().data.sel(bands="B08").values)
    else:
        assert json.loads(local.read_text()) == json.loads(remote.read_text())


# --- a real cluster of processes behind a real server ----------------------------------------
def _dask_command() -> list[str]:
    return [str(Path(sys.executable).with_name("dask"))]


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory):
    """`dask scheduler` and two `dask worker` processes on loopback."""
    folder = tmp_path_factory.mktemp("dask-cluster")
    scheduler_file = folder / "scheduler.json"
    logs = [open(folder / name, "w") for name in ("scheduler.log", "w1.log", "w2.log")]
    procs = [subprocess.Popen(
        [*_dask_command(), "scheduler", "--host", "127.0.0.1", "--port", "0",
         "--dashboard-address", ":0", "--scheduler-file", str(scheduler_file)],
        stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in (1, 2):
            procs.append(subprocess.Popen(
                [*_dask_command(), "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
                 "--nworkers", "1", "--memory-limit", "2GB", "--no-dashboard",
                 "--name", f"w{i}"], stdout=logs[i], stderr=subprocess.STDOUT))
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for f in logs:
            f.close()


def ndvi_max(con, out: Path) -> np.ndarray:
    """W1 on the sample collection: NDVI over bands, maximum over time, as GeoTIFF."""
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=["2022-05-01", "2022-08-01"],
                             bands=["B04", "B08"])
    ndvi = s2.reduce_dimension(dimension="bands", reducer=lambda data: (
        (data.array_element(label="B08") - data.array_element(label="B04"))
        / (data.array_element(label="B08") + data.array_element(label="B04"))))
    ndvi.reduce_dimension(dimension="t", reducer="max").download(out, format="GTiff")
    with rasterio.open(out) as ds:
        return ds.read()


def cloud_free_monthly_median(con, out: Path) -> xr.Dataset:
    """W2 on the sample collection: cloud mask from SCL, monthly median, as netCDF."""
    s2 = con.load_collection("SENTINEL2_L2A", temporal_extent=["2022-05-01", "2022-07-01"],
                             bands=["B02", "B04", "SCL"])
    scl = s2.band("SCL")
    cloud = (scl == 3) | (scl == 8) | (scl == 9) | (scl == 10)
    refl = s2.filter_bands(["B02", "B04"]).mask(cloud)
    refl.aggregate_temporal_period("month", reducer="median").download(out, format="netCDF")
    with xr.open_dataset(out) as ds:
        return ds.load()


@pytest.mark.e2e
def test_w1_and_w2_on_a_dask_cluster_equal_the_local_run(dask_cluster: str, server,
                                                   sample_data_dir: Path,
                                                   tmp_path: Path) -> None:
    openeo = pytest.importorskip("openeo")
    from distributed import get_task_stream
    from tests.support.processes import ServerProcess

    local_con = openeo.connect(server.url).authenticate_basic("demo", "demo")
    local = ndvi_max(local_con, tmp_path / "local.tif")
    local_monthly = cloud_free_monthly_median(local_con, tmp_path / "local.nc")
    remote_server = ServerProcess(sample_data_dir, env={
        "TERRACUBE_DASK_SCHEDULER": dask_cluster, "TERRACUBE_WORKERS": "0"})
    try:
        con = openeo.connect(remote_server.url).authenticate_basic("demo", "demo")
        with distributed.Client(dask_cluster, set_as_default=False) as client:
            workers = set(client.scheduler_info()["workers"])
            with get_task_stream(client) as stream:
                remote = ndvi_max(con, tmp_path / "remote.tif")
                remote_monthly = cloud_free_monthly_median(con, tmp_path / "remote.nc")
            records = stream.data
    finally:
        remote_server.stop()
    assert "dask cluster at " + dask_cluster in remote_server.log_path.read_text()
    np.testing.assert_array_equal(local, remote)
    assert np.isfinite(local).mean() > 0.5
    xr.testing.assert_identical(local_monthly, remote_monthly)
    assert local_monthly.sizes["t"] == 2 and set(local_monthly.data_vars) >= {"B02", "B04"}
    ran_on = {r["worker"] for r in records}
    assert len(records) > 10 and ran_on <= workers and ran_on
    print(f"{len(records)} tasks on {len(ran_on)} of {len(workers)} workers")


_MEMORY_PROBE = """
import ctypes, sys
import numpy as np
from numpy._core.multiarray import _set_madvise_hugepage
from terracube.executor import Executor
from terracube.settings import Settings

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
Executor.from_settings(Settings(data_dir=sys.argv[1]))
before = mallinfo2().hblks
block = np.ones((2048, 2048), np.float32)  # 16 MB: a chunk of W1
print(_set_madvise_hugepage(True), mallinfo2().hblks - before)
"""


@pytest.mark.parametrize("env, expected", [({}, "False 0"),
                                           ({"NUMPY_MADVISE_HUGEPAGE": "1",
                                             "MALLOC_MMAP_THRESHOLD_": "131072"}, "True 1")])
def test_computing_processes_reuse_their_heap_for_blocks(tmp_path: Path, env: dict,
                                                         expected: str) -> None:
    """A process with an executor keeps blocks of up to 32 MB on its heap (not a fresh
    mapping each) in 4 KB pages (not numpy's 2 MB pages); the environment's settings win."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc only")
    out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(tmp_path)], text=True,
                         capture_output=True, env={**os.environ, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == expected.split()


_ARENA_PROBE = """
import ctypes, os, sys, tempfile, threading
import numpy as np
from terracube.cli.main import main

try:
    main([])  # no command: prints the usage, as any `terracube` run starts
except SystemExit:
    pass
blocks, ready = [], threading.Barrier(2)

def compute():  # a compute thread: allocates a 16 MB block (a chunk of W1) and holds it
    blocks.append(np.ones((2048, 2048), np.float32))
    ready.wait()

threads = [threading.Thread(target=compute) for _ in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
path = os.path.join(tempfile.mkdtemp(), "malloc.xml")
stream = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, ctypes.c_void_p(stream))
libc.fclose(ctypes.c_void_p(stream))
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.parametrize("env, one_arena", [({}, True), ({"MALLOC_ARENA_MAX": "4"}, False)])
def test_terracube_processes_share_one_malloc_arena(env: dict, one_arena: bool) -> None:
    """Every `terracube` process (server, job worker) allocates from one glibc arena: compute
    threads with their own arenas map and unmap 64 MB heaps as blocks come and go. A
    MALLOC_ARENA_MAX of the environment wins."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc only")
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run([sys.executable, "-c", _ARENA_PROBE], text=True, capture_output=True,
                         env={**clean, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    arenas = int(out.stdout.split()[-1])
    assert (arenas == 1) if one_arena else (arenas > 1), arenas


_TRIM_PROBE = """
import sys
import numpy as np
from terracube import executor
from terracube.executor import Executor
from terracube.settings import Settings

def rss_mb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024

Executor.from_settings(Settings(data_dir=sys.argv[1]))
base = rss_mb()
blocks = [np.ones((2048, 2048), np.float32) for _ in range(20)]  # 320 MB of 16 MB blocks
del blocks
kept = rss_mb() - base
executor.release_free_memory()
print(kept, rss_mb() - base)
"""


def test_freed_blocks_stay_until_the_computation_gives_them_back(tmp_path: Path) -> None:
    """During a computation the heap keeps what its blocks freed (up to 512 MB: no page
    faults when the next blocks come); `release_free_memory` (after each synchronous
    response) gives it back to the system."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's malloc only")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", _TRIM_PROBE, str(tmp_path)], text=True,
                         capture_output=True, env=clean, timeout=120)
    assert out.returncode == 0, out.stderr
    kept, after = (int(v) for v in out.stdout.split())
    assert kept > 250 and after < 50, (kept, after)
