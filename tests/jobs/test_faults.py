"""Faults while jobs run (issue 16), against a real `terracube serve` with a worker: the disk
holding the job results fills up mid-job (the job is `error`, with a log entry that says why,
nothing finished is lost, and the job runs again once there is room); another process holds
the database locked longer than the server waits (the job still ends `finished`)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openeo
import pytest
from tests.jobs.job_graphs import ndvi_graph, slow_graph
from tests.support.processes import ServerProcess, wait_for

VOLUME_BYTES = 4 * 1024 * 1024
# The locked database: the server's SQLite busy timeout and the job heartbeat timeout are
# shortened (settings) so that the lock can outlast both in seconds rather than a minute.
BUSY_TIMEOUT_S = 3
HEARTBEAT_S = 5
LOCKED_S = 8


@pytest.fixture
def small_results_volume(data_dir: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted as data_dir/jobs (root only; skipped otherwise)."""
    jobs = data_dir / "jobs"
    jobs.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small volume for the results needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={VOLUME_BYTES},mode=0700",
                              "tmpfs", str(jobs)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield jobs
    finally:
        subprocess.run(["umount", "-l", str(jobs)], check=False)


def fill(volume: Path, leave: int) -> Path:
    """Fill the volume up to `leave` free bytes with one file; returns it."""
    filler = volume / "filler"
    free = os.statvfs(volume).f_bavail * os.statvfs(volume).f_frsize
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave))
    return filler


def data_files(paths: list[Path]) -> dict[str, bytes]:
    """The result files (not the metadata, whose signed links differ at each request)."""
    return {p.name: p.read_bytes() for p in paths if p.suffix != ".json"}


def wait_stopped(job: openeo.BatchJob) -> str:
    return wait_for(lambda: (s := job.status()) in ("finished", "error", "canceled") and s,
                    timeout=300, interval=0.5, what=f"job {job.job_id} to end")


def test_a_full_results_disk_fails_the_job_truthfully_and_loses_nothing(
        data_dir, small_results_volume, start_server, tmp_path):
    server: ServerProcess = start_server(data_dir, {"TERRACUBE_WORKERS": "1"})
    con = openeo.connect(server.api).authenticate_basic("alice", "wonderland")

    done = con.create_job(ndvi_graph())
    done.start()
    assert wait_stopped(done) == "finished"
    first = done.get_results().download_files(tmp_path / "first")
    before = data_files(first)

    filler = fill(small_results_volume, leave=4096)
    full = con.create_job(ndvi_graph("GTiff"))
    full.start()
    assert wait_stopped(full) == "error"
    messages = " ".join(entry["message"] for entry in full.logs(level="error"))
    assert "storage for results is full (No space left on device)" in messages, messages
    assert full.describe()["progress"] < 100

    # The finished job's results are untouched.
    again = done.get_results().download_files(tmp_path / "again")
    assert data_files(again) == before and before

    # With room again, the failed job runs.
    filler.unlink()
    full.start()
    assert wait_stopped(full) == "finished"
    assert full.get_results().download_files(tmp_path / "full")


def test_a_locked_database_during_a_job_still_ends_it_truthfully(data_dir, start_server,
                                                                 tmp_path):
    """Another process holds the SQLite database locked for longer than the server waits
    (its busy timeout, 3 s here) while a job runs: the worker retries its writes until the lock
    is gone, so the job ends `finished` after running exactly once (one start, no re-queue),
    with one set of results, and the API answers again. The lock also outlasts the heartbeat
    timeout (5 s here)."""
    server: ServerProcess = start_server(data_dir, {
        "TERRACUBE_WORKERS": "1", "TERRACUBE_JOB_HEARTBEAT_TIMEOUT_SECONDS": str(HEARTBEAT_S),
        "TERRACUBE_DATABASE_BUSY_TIMEOUT_SECONDS": str(BUSY_TIMEOUT_S)})
    con = openeo.connect(server.api).authenticate_basic("alice", "wonderland")
    job = con.create_job(slow_graph(0.25))
    job.start()
    wait_for(lambda: job.status() == "running", timeout=120, what="the job to run")
    holder = sqlite3.connect(data_dir / "terracube.db", timeout=60, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        time.sleep(LOCKED_S)  # beyond the busy timeout and the heartbeat timeout
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert wait_stopped(job) == "finished"
    files = job.get_results().download_files(tmp_path / "results")
    assert [p.name for p in files if p.suffix == ".nc"] == ["openEO.nc"]
    with sqlite3.connect(data_dir / "terracube.db") as db:
        (status, attempts) = db.execute("SELECT status, attempts FROM jobs WHERE job_id = ?",
                                        (job.job_id,)).fetchone()
    assert status == "finished"
    # It ran once: one start, no re-queue, and the worker waited for the lock.
    messages = [entry["message"] for entry in job.logs()]
    assert attempts == 1, messages
    assert sum(m.startswith("Started on worker") for m in messages) == 1, messages
    assert not [e for e in job.logs() if e.get("code") == "JobRequeued"], messages
    assert "the database is locked" in server.log()
