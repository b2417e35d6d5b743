"""Batch jobs end to end: the official openeo client against real `terracube serve` processes
with their worker processes — results, logs, failures, cancel, two users, and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from tests.jobs.job_graphs import slow_graph
from tests.support.data import data_dir_with_samples
from tests.support.processes import pid_alive, wait_for

from terracube.db import open_database
from terracube.jobs.store import JobStore
from terracube.settings import Settings

openeo = pytest.importorskip("openeo")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

BBOX = {"west": 679720, "south": 5151080, "east": 680680, "north": 5151920, "crs": "EPSG:32632"}
JUNE = ["2022-06-01", "2022-07-01"]


def connect(srv, user: str = "demo", password: str = "demo"):
    return openeo.connect(srv.url).authenticate_basic(user, password)


def ndvi_cube(con, nir: str = "B08"):
    s2 = con.load_collection("SENTINEL2_L2A", spatial_extent=BBOX, temporal_extent=JUNE,
                             bands=["B04", "B08"])
    return s2.ndvi(nir=nir, red="B04")


def job_record(data_dir: Path, job_id: str):
    """The job as the server's database has it (pid of its job process etc.)."""
    db = open_database(Settings(data_dir=data_dir).database_url)
    try:
        return JobStore(db).get(job_id)
    finally:
        db.dispose()


def wait_computing(data_dir: Path, job_id: str):
    return wait_for(lambda: (r := job_record(data_dir, job_id)).status == "running" and r.pid
                    and r.progress > 2.5 and r, 120, what="the job to compute")


def worker_pids(srv) -> list[int]:
    return [p.pid for p in psutil.Process(srv.proc.pid).children()
            if "worker" in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE]


def own_data_dir(tmp_path: Path, sample_data_dir: Path) -> Path:
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    return data


# --- results ---------------------------------------------------------------------------------
def test_execute_batch_gives_the_synchronous_result(server, tmp_path):
    con = connect(server)
    cube = ndvi_cube(con)
    job = cube.execute_batch(tmp_path / "batch.nc", max_poll_interval=0.2)
    assert job.status() == "finished"
    cube.download(tmp_path / "sync.nc")
    batch = xr.load_dataset(tmp_path / "batch.nc")
    sync = xr.load_dataset(tmp_path / "sync.nc")
    assert set(batch.data_vars) == set(sync.data_vars)
    for name in sync.data_vars:
        np.testing.assert_array_equal(batch[name].values, sync[name].values)
    assert batch.sizes == sync.sizes and batch.sizes["t"] == 6


def test_job_lifecycle_with_the_client(server, tmp_path):
    con = connect(server)
    cube = ndvi_cube(con).reduce_dimension(dimension="t", reducer="max")
    job = con.create_job(cube.save_result("GTiff"), title="NDVI max June")
    assert job.status() == "created"
    job.start_and_wait(max_poll_interval=0.2)
    info = job.describe()
    assert info["status"] == "finished" and info["progress"] == 100
    assert info["usage"]["cpu"]["unit"] == "cpu-seconds"

    results = job.get_results()
    files = results.download_files(tmp_path / "files")
    tifs = [f for f in files if f.suffix == ".tif"]
    assert [f.name for f in tifs] == ["openEO.tif"]
    cube.download(tmp_path / "sync.tif", format="GTiff")
    with rasterio.open(tifs[0]) as got, rasterio.open(tmp_path / "sync.tif") as want:
        assert got.crs.to_epsg() == 32632 and got.transform == want.transform
        np.testing.assert_array_equal(got.read(), want.read())
    metadata = results.get_metadata()
    asset = metadata["assets"]["openEO.tif"]
    assert asset["file:size"] == tifs[0].stat().st_size and asset["proj:epsg"] == 32632
    assert metadata["type"] == "Collection" and metadata["openeo:status"] == "finished"

    messages = [entry["message"] for entry in job.logs()]
    assert messages[0] == "Queued." and messages[-1].startswith("Finished")
    listed = {j["id"]: j for j in con.list_jobs()}
    assert listed[job.job_id]["title"] == "NDVI max June"
    assert listed[job.job_id]["status"] == "finished"
    job.delete()
    assert job.job_id not in {j["id"] for j in con.list_jobs()}


def test_a_job_with_two_save_results_writes_both_outputs(server, tmp_path):
    """The client's MultiResult: the NDVI series as netCDF and its maximum as GeoTIFF, two
    save_result nodes of which only the second is the result node (issue 11, defect 1)."""
    from openeo.rest.multiresult import MultiResult

    con = connect(server)
    series = ndvi_cube(con)
    composite = series.reduce_dimension(dimension="t", reducer="max")
    outputs = MultiResult([series.save_result("netCDF"), composite.save_result("GTiff")])
    nodes = [nid for nid, node in outputs.flat_graph().items()
             if node["process_id"] == "save_result"]
    job = outputs.create_job(title="two outputs")
    job.start_and_wait(max_poll_interval=0.2)

    results = job.get_results()
    names = sorted(results.get_metadata()["assets"])
    assert names == sorted([f"openEO_{nodes[0]}.nc", f"openEO_{nodes[1]}.tif"])
    files = {f.name: f for f in results.download_files(tmp_path / "files")}
    ndvi = xr.load_dataset(files[f"openEO_{nodes[0]}.nc"])
    (var,) = [v for v in ndvi.data_vars if v not in ("crs", "spatial_ref")]
    assert ndvi.sizes["t"] == 6
    with rasterio.open(files[f"openEO_{nodes[1]}.tif"]) as tif:
        # the maximum over time, computed here with numpy from the other output
        np.testing.assert_allclose(tif.read(1), np.nanmax(ndvi[var].values, axis=0),
                                   rtol=1e-6)
    assert job.logs()[-1]["message"].startswith("Finished: 2 file(s)")
    # Per-step usage in the log (the API's place for it): one entry per output on its
    # save_result node, with what writing it took and the bytes of the files it wrote.
    entries = {e["path"][0]["node_id"]: e for e in job.logs()
               if e["message"].startswith("Output ")}
    assert sorted(entries) == sorted(nodes)
    for node, name in ((nodes[0], f"openEO_{nodes[0]}.nc"), (nodes[1], f"openEO_{nodes[1]}.tif")):
        usage = entries[node]["usage"]
        assert entries[node]["path"][0]["process_id"] == "save_result"
        assert usage["bytes_written"] == {"value": files[name].stat().st_size, "unit": "b"}
        assert usage["duration"]["unit"] == "seconds" and usage["duration"]["value"] > 0
        assert usage["cpu"]["value"] >= 0 and usage["bytes_read"]["value"] >= 0
    (evaluated,) = [e for e in job.logs() if e["message"].startswith("Evaluated")]
    assert evaluated["usage"]["duration"]["value"] > 0
    total = job.describe()["usage"]["duration"]["value"]
    assert sum(e["usage"]["duration"]["value"] for e in entries.values()) < total


def test_failing_job_has_an_error_log_naming_the_node(server):
    con = connect(server)
    job = con.create_job(ndvi_cube(con, nir="B99").save_result("netCDF"))
    with pytest.raises(openeo.rest.JobFailedException):
        job.start_and_wait(max_poll_interval=0.2, show_error_logs=False)
    assert job.status() == "error"
    (error,) = job.logs(level="error")
    node = error["path"][0]["node_id"]
    assert error["path"][0]["process_id"] == "ndvi"
    assert node in error["message"] and "B99" in error["message"]
    with pytest.raises(openeo.rest.OpenEoApiError) as failed:
        job.get_results().get_metadata()
    assert failed.value.http_status_code == 424


def test_cancel_stops_a_running_job(server, sample_data_dir):
    con = connect(server)
    job = con.create_job(slow_graph())
    job.start()
    record = wait_computing(sample_data_dir, job.job_id)
    assert pid_alive(record.pid)
    job.stop()
    assert job.status() == "created"  # no partial results: back to created, per the API
    wait_for(lambda: not pid_alive(record.pid), 5, what="the job process to end")
    messages = [entry["message"] for entry in job.logs()]
    assert any(m.startswith("Canceled by the user") for m in messages)
    # It can be started again and then runs to the end (a second cancel keeps it short).
    job.start()
    assert job.status() in ("queued", "running")
    job.stop()


def test_users_do_not_see_each_others_jobs(server, sample_data_dir):
    r = subprocess.run([sys.executable, "-m", "terracube.cli", "users", "add", "carol",
                        "--data-dir", str(sample_data_dir)], input="carols-secret\n",
                       capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items()
                            if not k.startswith("TERRACUBE_")})
    assert r.returncode == 0, r.stderr
    demo, carol = connect(server), connect(server, "carol", "carols-secret")
    job = demo.create_job(ndvi_cube(demo).save_result("netCDF"), title="demo's")
    assert job.job_id not in {j["id"] for j in carol.list_jobs()}
    for action in (lambda j: j.describe(), lambda j: j.logs(), lambda j: j.start(),
                   lambda j: j.delete(), lambda j: j.get_results().get_metadata()):
        with pytest.raises(openeo.rest.OpenEoApiError) as refused:
            action(carol.job(job.job_id))
        assert refused.value.http_status_code == 404
        assert refused.value.code == "JobNotFound"
    assert job.describe()["title"] == "demo's"


# --- durability ------------------------------------------------------------------------------
def test_worker_killed_mid_job_recovers_and_runs_the_job_once(start_server, tmp_path,
                                                              sample_data_dir):
    data = own_data_dir(tmp_path, sample_data_dir)
    srv = start_server(data, {"TERRACUBE_WORKERS": "1"})
    con = connect(srv)
    job = con.create_job(slow_graph())
    job.start()
    record = wait_computing(data, job.job_id)
    (worker,) = worker_pids(srv)
    os.kill(worker, signal.SIGKILL)
    # The computation dies with its worker: it can never run twice at the same time.
    wait_for(lambda: not pid_alive(record.pid), 5, what="the orphaned job process to end")
    # The server starts a new worker, which finds the job of the dead one and re-runs it.
    wait_for(lambda: job.status() == "finished", 180, what="the job to finish")
    entries = job.logs()
    requeued = [e for e in entries if e.get("code") == "JobRequeued"]
    assert len(requeued) == 1 and requeued[0]["level"] == "warning"
    assert "stopped without finishing" in requeued[0]["message"]
    assert sum(e["message"].startswith("Started on worker") for e in entries) == 2
    final = job_record(data, job.job_id)
    assert final.attempts == 2
    assert [p.name for p in (data / "jobs" / job.job_id).iterdir()] == [final.results_run]
    paths = job.get_results().download_files(tmp_path / "out")
    assert xr.load_dataset(next(p for p in paths if p.suffix == ".nc")).sizes["x"] == 384


def test_server_killed_mid_job_resumes_after_restart(start_server, tmp_path, sample_data_dir):
    data = own_data_dir(tmp_path, sample_data_dir)
    srv = start_server(data, {"TERRACUBE_WORKERS": "1"})
    con = connect(srv)
    done = con.create_job(ndvi_cube(con).save_result("netCDF"))
    done.start_and_wait(max_poll_interval=0.2)
    job = con.create_job(slow_graph())
    job.start()
    record = wait_computing(data, job.job_id)
    workers = worker_pids(srv)
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait(10)
    # Without their server the workers stop; the running job goes back into the queue.
    wait_for(lambda: not any(pid_alive(p) for p in [*workers, record.pid]), 30,
             what="the workers and the job process to end")
    assert job_record(data, job.job_id).status == "queued"
    srv.stop()
    again = start_server(data, {"TERRACUBE_WORKERS": "1"})
    con = connect(again)
    wait_for(lambda: con.job(job.job_id).status() == "finished", 180, what="the job to finish")
    # The result finished before the kill is still there.
    assert con.job(done.job_id).status() == "finished"
    paths = con.job(done.job_id).get_results().download_files(tmp_path / "done")
    assert any(p.suffix == ".nc" for p in paths)
