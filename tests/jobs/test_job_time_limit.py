"""Issue 16, honest limits: a batch job runs under a wall-clock limit (TERRACUBE_JOB_MAX_SECONDS,
or the job's own lower `max-seconds` option), through the official client against a real
`terracube serve` with one worker. A job over its limit ends as `error` with a log entry naming
the limit and how to raise it; the worker then runs the rest of the queue."""

from __future__ import annotations

import openeo
import pytest
import requests
from openeo.rest import OpenEoApiError
from tests.jobs.job_graphs import ndvi_graph, slow_graph
from tests.support.processes import ServerProcess, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SERVER_LIMIT_S = 8


def wait_stopped(job: openeo.BatchJob) -> str:
    return wait_for(lambda: (s := job.status()) in ("finished", "error", "canceled") and s,
                    timeout=240, interval=0.5, what=f"job {job.job_id} to end")


def error_entry(job: openeo.BatchJob) -> dict:
    entries = job.logs(level="error")
    assert len(entries) == 1, entries
    return entries[0]


def test_jobs_over_their_time_limit_stop_and_the_queue_goes_on(data_dir, start_server):
    server: ServerProcess = start_server(data_dir, {
        "TERRACUBE_WORKERS": "1", "TERRACUBE_JOB_MAX_SECONDS": str(SERVER_LIMIT_S)})
    con = openeo.connect(server.api).authenticate_basic("alice", "wonderland")

    # The limit is listed, with the setting as default and maximum.
    parameters = requests.get(server.api + "processing_parameters", timeout=30).json()
    (listed,) = [p for p in parameters["create_job_parameters"] if p["name"] == "max-seconds"]
    assert listed["default"] == SERVER_LIMIT_S
    assert listed["schema"]["maximum"] == SERVER_LIMIT_S
    assert "TERRACUBE_JOB_MAX_SECONDS" in listed["description"]

    # A wrong value is refused when the job is created.
    with pytest.raises(OpenEoApiError) as refused:
        con.create_job(ndvi_graph(), job_options={"max-seconds": "soon"})
    assert refused.value.http_status_code == 400 and refused.value.code == "BadRequest"
    assert "max-seconds" in refused.value.message

    # Three jobs queued for one worker: ~27 s and ~18 s of work, then a small one.
    own = con.create_job(slow_graph(1.5), job_options={"max-seconds": 2})
    server_wide = con.create_job(slow_graph(1.0))
    small = con.create_job(ndvi_graph())
    for job in (own, server_wide, small):
        job.start()

    assert wait_stopped(own) == "error"
    entry = error_entry(own)
    assert entry["code"] == "ProcessGraphComplexity"
    assert "may run for 2 s (the job option max-seconds)" in entry["message"], entry
    assert "TERRACUBE_JOB_MAX_SECONDS" in entry["message"]
    duration = own.describe()["usage"]["duration"]["value"]
    assert 2 <= duration < 2 + 3, duration

    assert wait_stopped(server_wide) == "error"
    entry = error_entry(server_wide)
    assert (f"may run for {SERVER_LIMIT_S} s (the server's setting "
            "TERRACUBE_JOB_MAX_SECONDS)") in entry["message"], entry
    described = server_wide.describe()
    assert SERVER_LIMIT_S <= described["usage"]["duration"]["value"] < SERVER_LIMIT_S + 3
    assert described["progress"] < 100

    # The worker carries on with the rest of the queue.
    assert wait_stopped(small) == "finished"
    assert small.get_results().get_assets()

