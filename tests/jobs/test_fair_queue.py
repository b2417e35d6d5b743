"""Fair queueing and per-user limits against a real `terracube serve` with its workers
(issue 16): jobs are taken round-robin across users, a user's queued jobs are capped (429 with
Retry-After, as the official client sees it), and so are a user's concurrent synchronous
requests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openeo
import pytest
from argon2 import PasswordHasher
from openeo.rest import OpenEoApiError
from tests.jobs.job_graphs import ndvi_graph, slow_graph
from tests.support.data import data_dir_with_samples
from tests.support.processes import ServerProcess, wait_for

from terracube.auth.users import UserStore
from terracube.db import open_database
from terracube.settings import Settings

MAX_QUEUED = 6


@pytest.fixture
def server(data_dir: Path, start_server) -> ServerProcess:
    """One worker, so that the order in which jobs start is the queue's."""
    return start_server(data_dir, {"TERRACUBE_WORKERS": "1",
                                   "TERRACUBE_MAX_QUEUED_JOBS_PER_USER": str(MAX_QUEUED)})


@pytest.fixture(scope="module")
def idle_server(tmp_path_factory: pytest.TempPathFactory,
                sample_data_dir: Path) -> Iterator[ServerProcess]:
    """No workers (nothing leaves the queue), two queued jobs and one sync request per user."""
    data = data_dir_with_samples(tmp_path_factory.mktemp("limits"), sample_data_dir)
    users = UserStore(open_database(Settings(data_dir=data).database_url),
                      PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("alice", "wonderland")
    users.add("bob", "builder")
    users.db.dispose()
    srv = ServerProcess(data, {"TERRACUBE_WORKERS": "0",
                               "TERRACUBE_MAX_QUEUED_JOBS_PER_USER": "2",
                               "TERRACUBE_MAX_SYNC_REQUESTS_PER_USER": "1"})
    yield srv
    srv.stop()


def connect(server: ServerProcess, user: str, password: str) -> openeo.Connection:
    return openeo.connect(server.api).authenticate_basic(user, password)


def test_one_users_many_jobs_do_not_hold_up_another_users_job(server):
    alice, bob = connect(server, "alice", "wonderland"), connect(server, "bob", "builder")
    alice_jobs = [alice.create_job(ndvi_graph(), title=f"a{i}") for i in range(MAX_QUEUED)]
    bob_job = bob.create_job(ndvi_graph(), title="b")
    for job in alice_jobs:
        job.start()
    bob_job.start()

    def alice_started() -> int:
        return sum(job.status() != "queued" for job in alice_jobs)

    # One worker: when Bob's job leaves the queue, at most Alice's first two have (the one
    # running when Bob queued, and one the worker may have taken just before).
    wait_for(lambda: bob_job.status() != "queued", timeout=240, interval=0.2,
             what="Bob's job to start")
    assert alice_started() <= 3
    wait_for(lambda: bob_job.status() == "finished", timeout=240, what="Bob's job to finish")
    assert alice_started() < MAX_QUEUED  # Alice's jobs are not all done before Bob's


def test_too_many_queued_jobs_answer_429_with_retry_after(idle_server):
    server = idle_server
    alice = connect(server, "alice", "wonderland")
    jobs = [alice.create_job(ndvi_graph()) for _ in range(3)]
    jobs[0].start()
    jobs[1].start()
    with pytest.raises(OpenEoApiError) as info:  # the official client's view
        jobs[2].start()
    assert info.value.http_status_code == 429 and info.value.code == "TooManyRequests"
    assert "2 batch jobs queued" in info.value.message
    r = httpx.post(f"{server.api}jobs/{jobs[2].job_id}/results",
                   headers={"Authorization": f"Bearer {alice.auth.bearer}"}, timeout=60)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    assert jobs[2].status() == "created"
    bob = connect(server, "bob", "builder")
    bob.create_job(ndvi_graph()).start()  # the limit is per user
    jobs[0].stop()  # back to created: room for one more
    jobs[2].start()
    assert jobs[2].status() == "queued"


def test_concurrent_sync_requests_of_one_user_are_limited(idle_server):
    server = idle_server
    alice, bob = connect(server, "alice", "wonderland"), connect(server, "bob", "builder")
    slow: dict[str, object] = {}

    def run_slow() -> None:
        started = time.monotonic()
        try:
            slow["bytes"] = len(alice.download(slow_graph(0.25)))
        except Exception as exc:  # reported by the assertion below
            slow["error"] = exc
        slow["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=run_slow)
    thread.start()
    time.sleep(1.5)  # the slow request (about 5 s of waiting UDFs) is running now
    with pytest.raises(OpenEoApiError) as info:
        alice.download(ndvi_graph("GTiff"))
    assert info.value.http_status_code == 429 and info.value.code == "TooManyRequests"
    assert len(bob.download(ndvi_graph("GTiff"))) > 0  # other users are not affected
    thread.join(300)
    assert "error" not in slow and slow["bytes"] > 0, slow
    assert len(alice.download(ndvi_graph("GTiff"))) > 0  # the slot is free again
