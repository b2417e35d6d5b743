"""`terracube worker` as real processes: running jobs, failures, cancel (the computation stops),
a worker killed with SIGKILL mid-job, a job process killed, shutdown, retention."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from tests.jobs.job_graphs import ndvi_graph, slow_graph
from tests.support.data import data_dir_with_samples
from tests.support.markers import needs_postgres
from tests.support.processes import WorkerProcess, clean_env, pid_alive, wait_for

from terracube.db import open_database
from terracube.jobs.files import JobFolders
from terracube.jobs.store import JobStore
from terracube.settings import Settings

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def jobs(data_dir: Path):
    db = open_database(Settings(data_dir=data_dir).database_url)
    yield JobStore(db)
    db.dispose()


def start_worker(workers: list, data_dir: Path, *args: str, **env: str) -> WorkerProcess:
    worker = WorkerProcess(data_dir, *args, env=env)
    workers.append(worker)
    return worker


def submit(jobs: JobStore, process: dict, user: str = "alice") -> str:
    job = jobs.create(user, process)
    jobs.start(job.job_id, user)
    return job.job_id


def wait_status(jobs: JobStore, job_id: str, *statuses: str, timeout: float = 120):
    return wait_for(lambda: (job := jobs.get(job_id)).status in statuses and job,
                    timeout, what=f"job {job_id} to be {'/'.join(statuses)}")


def wait_running(jobs: JobStore, job_id: str, timeout: float = 60):
    """Until the job process computes (it has reported progress beyond the evaluation)."""
    return wait_for(lambda: (job := jobs.get(job_id)).status == "running" and job.pid
                    and job.progress > 2.5 and job, timeout, what="the job to compute")


def expected_ndvi(data_dir: Path, tmp_path: Path) -> xr.Dataset:
    """The same graph computed synchronously in this process (POST /result's code path)."""
    from terracube.catalog import Catalog
    from terracube.engine.registry import build_registry
    from terracube.processing.outputs import compute_result
    from terracube.processing.services import build_services

    settings = Settings(data_dir=data_dir)
    services = build_services(settings, Catalog(settings), build_registry())
    result = compute_result(ndvi_graph(), services)
    try:
        return xr.load_dataset(result.path)
    finally:
        result.remove()


def test_worker_runs_a_queued_job(data_dir, jobs, workers, tmp_path):
    job_id = submit(jobs, ndvi_graph())
    worker = start_worker(workers, data_dir, "--once")
    assert worker.wait() == 0, worker.log()
    job = jobs.get(job_id)
    assert (job.status, job.progress, job.attempts) == ("finished", 100, 1), worker.log()
    (asset,) = job.assets
    assert asset["name"] == "openEO.nc" and asset["type"] == "application/x-netcdf"
    path = JobFolders(data_dir).asset_path(job_id, job.results_run, "openEO.nc")
    assert path.stat().st_size == asset["size"]
    assert asset["proj"]["proj:epsg"] == 32632 and asset["proj"]["proj:shape"] == [84, 96]
    got, expected = xr.load_dataset(path), expected_ndvi(data_dir, tmp_path)
    name = next(iter(expected.data_vars.keys() - {"spatial_ref", "crs"}))
    np.testing.assert_array_equal(got[name].values, expected[name].values)
    assert {"cpu", "duration", "memory", "peak_memory", "bytes_written"} <= set(job.usage)
    assert job.usage["bytes_written"]["value"] == asset["size"]
    assert job.usage["peak_memory"]["value"] > 10
    messages = [e.message for e in jobs.logs(job_id)]
    assert messages[0].startswith("Started on worker") and messages[-1].startswith("Finished")
    assert job.pid is None and job.run_id is None


def test_failing_job_logs_the_node_and_the_cause(data_dir, jobs, workers):
    job_id = submit(jobs, ndvi_graph(nir="B99"))
    worker = start_worker(workers, data_dir, "--once")
    assert worker.wait() == 0, worker.log()
    job = jobs.get(job_id)
    assert job.status == "error"
    error = jobs.last_error(job_id)
    assert error.code == "NirBandAmbiguous" and "B99" in error.message
    assert "ndvi1" in error.message
    assert error.path[0]["node_id"] == "ndvi1" and error.path[0]["process_id"] == "ndvi"
    assert error.usage["duration"]["value"] >= 0


def test_cancel_stops_the_computation(data_dir, jobs, workers):
    job_id = submit(jobs, slow_graph())
    worker = start_worker(workers, data_dir)
    job = wait_running(jobs, job_id)
    run_dir = JobFolders(data_dir).run_dir(job_id, job.results_run)
    assert pid_alive(job.pid) and run_dir.is_dir()
    canceled_at = time.monotonic()
    after = jobs.cancel(job_id, "alice")
    assert (after.status, after.progress) == ("created", 0)
    wait_for(lambda: not pid_alive(job.pid), 5, what="the job process to end")
    assert time.monotonic() - canceled_at < 5
    wait_for(lambda: not run_dir.exists(), 5, what="the partial files to go")
    assert jobs.get(job_id).status == "created"
    # The worker lives on and takes the next job.
    small = submit(jobs, ndvi_graph())
    assert wait_status(jobs, small, "finished", "error").status == "finished"
    assert worker.proc.poll() is None


def test_worker_killed_mid_job_is_recovered_and_the_job_runs_once(data_dir, jobs, workers):
    job_id = submit(jobs, slow_graph())
    first = start_worker(workers, data_dir)
    running = wait_running(jobs, job_id)
    first.kill()  # SIGKILL: no chance to clean up
    # The computation dies with its worker, so it can never run twice at the same time ...
    wait_for(lambda: not pid_alive(running.pid), 5, what="the orphaned job process to end")
    # ... and until someone notices, the record truthfully says who was running it.
    assert jobs.get(job_id).status == "running"
    start_worker(workers, data_dir)  # a new worker finds the job of the dead one
    job = wait_status(jobs, job_id, "finished", "error", timeout=180)
    assert job.status == "finished", [e.message for e in jobs.logs(job_id)]
    assert job.attempts == 2
    entries = jobs.logs(job_id)
    requeued = [e for e in entries if e.code == "JobRequeued"]
    assert len(requeued) == 1 and "stopped without finishing" in requeued[0].message
    assert sum(e.message.startswith("Started on worker") for e in entries) == 2
    folders = list(JobFolders(data_dir).job_dir(job_id).iterdir())
    assert [f.name for f in folders] == [job.results_run]


def test_killed_job_process_is_an_error_with_the_reason(data_dir, jobs, workers):
    job_id = submit(jobs, slow_graph())
    worker = start_worker(workers, data_dir)
    job = wait_running(jobs, job_id)
    os.kill(job.pid, signal.SIGKILL)  # what the kernel's OOM killer does
    failed = wait_status(jobs, job_id, "error", timeout=30)
    assert failed.progress > 0
    error = jobs.last_error(job_id)
    assert "killed by SIGKILL" in error.message and "memory" in error.message
    # A small job killed from outside is not blamed on memory (issue 16, item 8).
    assert "out of memory" not in error.message and "from outside" in error.message
    assert worker.proc.poll() is None


def test_shutdown_requeues_the_running_job(data_dir, jobs, workers):
    job_id = submit(jobs, slow_graph())
    worker = start_worker(workers, data_dir)
    job = wait_running(jobs, job_id)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    assert not pid_alive(job.pid)
    again = jobs.get(job_id)
    assert (again.status, again.attempts, again.progress) == ("queued", 0, 0)
    assert jobs.logs(job_id)[-1].code == "JobRequeued"


def test_retention_removes_old_results(data_dir, jobs, workers):
    job_id = submit(jobs, ndvi_graph())
    worker = start_worker(workers, data_dir, "--once")
    assert worker.wait() == 0
    job = jobs.get(job_id)
    run_dir = JobFolders(data_dir).run_dir(job_id, job.results_run)
    assert run_dir.is_dir()
    time.sleep(0.1)
    env = clean_env(TERRACUBE_JOB_RETENTION_DAYS="0.000001")  # 0.086 s
    r = subprocess.run([sys.executable, "-m", "terracube.cli", "jobs", "sweep", "--data-dir",
                        str(data_dir)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert f"{job_id}: results removed" in r.stdout
    assert not run_dir.exists()
    expired = jobs.get(job_id)
    assert (expired.status, expired.asset_count) == ("created", 0)
    assert jobs.logs(job_id)[-1].code == "ResultsExpired"


@needs_postgres
def test_worker_on_postgresql(postgres_url, tmp_path, sample_data_dir, workers):
    """The same worker against PostgreSQL (TERRACUBE_DATABASE_URL) instead of SQLite."""
    from sqlalchemy import text

    from terracube.auth.users import UserStore
    from terracube.db import Base

    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    db = open_database(postgres_url)
    try:
        UserStore(db).add("alice", "wonderland")
        jobs = JobStore(db)
        job_id = submit(jobs, ndvi_graph())
        worker = start_worker(workers, data, "--once", TERRACUBE_DATABASE_URL=postgres_url)
        assert worker.wait() == 0, worker.log()
        job = jobs.get(job_id)
        assert job.status == "finished", worker.log()
        assert JobFolders(data).asset_path(job_id, job.results_run, "openEO.nc").is_file()
        assert not (data / "terracube.db").exists()  # nothing went to SQLite
    finally:
        with db.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f'DELETE FROM "{table.name}"'))
        db.dispose()
