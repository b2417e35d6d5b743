"""JobStore: records, owners, status transitions, atomic claims, fencing, stale workers, logs,
retention — on SQLite and (when a server can be started) PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from tests.support.data import sqlite_url

from terracube import errors
from terracube.auth.users import User, UserStore
from terracube.db import Base, open_database
from terracube.jobs import store as st
from terracube.jobs.store import MAX_ATTEMPTS, JobStore

PROCESS = {"process_graph": {"n": {"process_id": "add", "arguments": {"x": 1, "y": 2},
                                   "result": True}}}


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(url: str):
    db = open_database(url)
    with db.session() as s:  # accounts without password hashing: only the rows matter here
        for name in ("alice", "bob"):
            s.add(User(user_id=name, password_hash="-", created=datetime.now(UTC)))
    yield db
    if not db.is_sqlite:
        with db.engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):
                conn.execute(text(f'DELETE FROM "{table.name}"'))
    db.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def jobs(database, clock) -> JobStore:
    return JobStore(database, clock)


def queued(jobs: JobStore, user: str = "alice", **fields) -> st.Job:
    job = jobs.create(user, PROCESS, **fields)
    assert jobs.start(job.job_id, user) is None
    return jobs.get(job.job_id)


# --- records and owners ---------------------------------------------------------------------------
def test_create_get_and_owner(jobs):
    job = jobs.create("alice", PROCESS, title="t", description="d", plan="free", budget=3,
                      log_level="warning")
    got = jobs.get(job.job_id, "alice")
    assert (got.status, got.progress, got.title, got.log_level) == ("created", 0, "t", "warning")
    assert got.process == PROCESS
    with pytest.raises(errors.JobNotFound):
        jobs.get(job.job_id, "bob")
    with pytest.raises(errors.JobNotFound):
        jobs.get("j-nope", "alice")


def test_list_newest_first_with_cursor(jobs, clock):
    ids = []
    for i in range(5):
        ids.append(jobs.create("alice", PROCESS, title=str(i)).job_id)
        clock.advance(seconds=1)
    jobs.create("bob", PROCESS)
    page, cursor = jobs.list("alice", limit=2)
    assert [j.job_id for j in page] == ids[::-1][:2]
    seen = [j.job_id for j in page]
    while cursor:
        page, cursor = jobs.list("alice", limit=2, after=cursor)
        seen += [j.job_id for j in page]
    assert seen == ids[::-1]
    assert [j.job_id for j in jobs.list("alice")[0]] == ids[::-1]
    with pytest.raises(ValueError):
        jobs.list("alice", after="not-a-cursor")


def test_update_and_lock(jobs, database):
    job = jobs.create("alice", PROCESS)
    jobs.update(job.job_id, "alice", {})
    jobs.update(job.job_id, "alice", {"title": "new", "budget": None})
    assert jobs.get(job.job_id).title == "new"
    with pytest.raises(errors.JobNotFound):
        jobs.update(job.job_id, "bob", {"title": "x"})
    jobs.start(job.job_id, "alice")
    with pytest.raises(errors.JobLocked):
        jobs.update(job.job_id, "alice", {"title": "y"})
    jobs.claim("w")
    with pytest.raises(errors.JobLocked):
        jobs.update(job.job_id, "alice", {"title": "y"})


def test_delete_removes_logs(jobs, database):
    job = jobs.create("alice", PROCESS)
    jobs.add_log(job.job_id, "info", "hello")
    with pytest.raises(errors.JobNotFound):
        jobs.delete(job.job_id, "bob")
    jobs.delete(job.job_id, "alice")
    with pytest.raises(errors.JobNotFound):
        jobs.get(job.job_id)
    assert jobs.logs(job.job_id) == []
    assert jobs.add_log(job.job_id, "info", "late") is None  # a worker writing afterwards


def test_removing_the_user_removes_the_jobs(jobs, database):
    job = jobs.create("bob", PROCESS)
    jobs.add_log(job.job_id, "info", "hello")
    UserStore(database).remove("bob")
    assert jobs.find(job.job_id) is None


# --- transitions ----------------------------------------------------------------------------------
def test_lifecycle_to_finished(jobs, clock):
    job = queued(jobs)
    assert job.status == "queued" and job.queued_at is not None
    assert jobs.start(job.job_id, "alice") == ""  # already queued: no effect
    claim = jobs.claim("w1")
    assert claim.job.status == "running" and claim.job.attempts == 1
    assert claim.job.results_run == claim.run_id
    clock.advance(seconds=2)
    assert jobs.heartbeat(job.job_id, claim.run_id, progress=42.5, pid=1234)
    got = jobs.get(job.job_id)
    assert (got.progress, got.pid, st.aware(got.heartbeat)) == (42.5, 1234, clock.now)
    assert jobs.record_assets(job.job_id, claim.run_id, [{"name": "a.tif", "size": 1}])
    assert jobs.finish(job.job_id, claim.run_id, {"cpu": {"value": 1, "unit": "cpu-seconds"}})
    done = jobs.get(job.job_id)
    assert (done.status, done.progress, done.asset_count) == ("finished", 100, 1)
    assert done.run_id is None and done.results_run == claim.run_id
    assert done.usage["cpu"]["value"] == 1
    # Starting a finished job again discards its results (the caller removes the folder).
    assert jobs.start(job.job_id, "alice") == claim.run_id
    again = jobs.get(job.job_id)
    assert (again.status, again.assets, again.results_run, again.usage) == (
        "queued", None, None, None)


def test_claim_takes_the_oldest_and_only_once(jobs, clock):
    first = queued(jobs)
    clock.advance(seconds=1)
    second = queued(jobs, "bob")
    a, b = jobs.claim("w1"), jobs.claim("w2")
    assert (a.job.job_id, b.job.job_id) == (first.job_id, second.job_id)
    assert a.run_id != b.run_id
    assert jobs.claim("w3") is None


def race_workers(url: str, count: int,
                 claims: Callable[[JobStore, str], Iterator[st.Claim]]) -> list[str]:
    """`count` workers, each with its own connection, claim at the same time; the ids of all
    the jobs they claimed."""
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        db = open_database(url)
        for claim in claims(JobStore(db), name):
            with lock:
                claimed.append(claim.job.job_id)
        db.dispose()

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return claimed


def test_concurrent_claims_never_share_a_job(url, database):
    """Eight workers with their own connections race for 40 jobs: each job is run once."""
    jobs = JobStore(database)
    ids = {queued(jobs).job_id for _ in range(40)}

    def claims(store: JobStore, name: str) -> Iterator[st.Claim]:
        while (claim := store.claim(name)) is not None:
            yield claim

    claimed = race_workers(url, 8, claims)
    assert sorted(claimed) == sorted(ids)
    assert {j.status for j in jobs.list("alice")[0]} == {"running"}


def test_cancel_queued_goes_back_to_created(jobs):
    job = queued(jobs)
    after = jobs.cancel(job.job_id, "alice")
    assert (after.status, after.progress) == ("created", 0)
    assert jobs.claim("w") is None


def test_cancel_running_without_results_is_created_and_fences_the_worker(jobs):
    job = queued(jobs)
    claim = jobs.claim("w")
    jobs.heartbeat(job.job_id, claim.run_id, progress=30)
    after = jobs.cancel(job.job_id, "alice")
    assert (after.status, after.progress, after.results_run) == ("created", 0, None)
    # The worker's run is over: nothing it does changes the job any more.
    assert not jobs.is_current(job.job_id, claim.run_id)
    assert not jobs.heartbeat(job.job_id, claim.run_id, progress=50)
    assert not jobs.record_assets(job.job_id, claim.run_id, [{"name": "x"}])
    assert not jobs.finish(job.job_id, claim.run_id, None)
    assert not jobs.fail(job.job_id, claim.run_id, None)
    assert jobs.get(job.job_id).status == "created"


def test_cancel_running_with_partial_results_is_canceled(jobs):
    job = queued(jobs)
    claim = jobs.claim("w")
    jobs.heartbeat(job.job_id, claim.run_id, progress=60)
    jobs.record_assets(job.job_id, claim.run_id, [{"name": "openEO_1.tif", "size": 5}])
    after = jobs.cancel(job.job_id, "alice")
    assert (after.status, after.progress, after.asset_count) == ("canceled", 60, 1)
    assert after.results_run == claim.run_id and after.ended is not None


def test_cancel_other_states_has_no_effect(jobs):
    job = jobs.create("alice", PROCESS)
    assert jobs.cancel(job.job_id, "alice").status == "created"
    with pytest.raises(errors.JobNotFound):
        jobs.cancel(job.job_id, "bob")


def test_fail_keeps_progress(jobs):
    job = queued(jobs)
    claim = jobs.claim("w")
    jobs.heartbeat(job.job_id, claim.run_id, progress=12)
    assert jobs.fail(job.job_id, claim.run_id, None)
    got = jobs.get(job.job_id)
    assert (got.status, got.progress) == ("error", 12)


def test_requeue_after_shutdown_does_not_count(jobs):
    job = queued(jobs)
    claim = jobs.claim("w")
    assert jobs.requeue(job.job_id, claim.run_id, count_attempt=False)
    got = jobs.get(job.job_id)
    assert (got.status, got.attempts, got.run_id) == ("queued", 0, None)


# --- stale workers --------------------------------------------------------------------------------
def test_dead_worker_job_is_requeued_once_then_error(jobs, clock):
    job = queued(jobs)
    dead = {"gone"}
    claim = jobs.claim("gone")
    assert jobs.stale(timedelta(hours=1), lambda w: w in dead) == []  # it beat just now
    clock.advance(seconds=7)
    stale = jobs.stale(timedelta(hours=1), lambda w: w in dead)
    assert [j.job_id for j in stale] == [job.job_id]
    assert jobs.recover(stale[0], "The worker vanished") == "queued"
    assert jobs.recover(stale[0], "again") is None  # the old run is not current any more
    assert not jobs.finish(job.job_id, claim.run_id, None)
    second = jobs.claim("gone")
    assert second.job.attempts == 2
    clock.advance(seconds=7)
    stale = jobs.stale(timedelta(hours=1), lambda w: w in dead)
    assert jobs.recover(stale[0], "The worker vanished") == "error"
    got = jobs.get(job.job_id)
    assert got.status == "error"
    entries = jobs.logs(job.job_id)
    assert [e.code for e in entries if e.code] == ["JobRequeued", "JobAbandoned"]
    assert "attempt 2 of 2" in entries[-2].message
    assert entries[-1].level == "error" and "not retried" in entries[-1].message
    assert MAX_ATTEMPTS == 2


def test_silent_worker_is_stale_after_the_timeout(jobs, clock):
    job = queued(jobs)
    claim = jobs.claim("far-away")
    alive = lambda _w: False  # noqa: E731  (another host: judged by its heartbeat only)
    clock.advance(seconds=50)
    assert jobs.stale(timedelta(seconds=60), alive) == []
    jobs.heartbeat(job.job_id, claim.run_id)
    clock.advance(seconds=59)
    assert jobs.stale(timedelta(seconds=60), alive) == []
    clock.advance(seconds=2)
    assert [j.job_id for j in jobs.stale(timedelta(seconds=60), alive)] == [job.job_id]


# --- logs -----------------------------------------------------------------------------------------
def test_logs_respect_the_job_level_and_page_by_id(jobs):
    job = jobs.create("alice", PROCESS, log_level="info")
    assert jobs.add_log(job.job_id, "debug", "dropped") is None
    ids = [jobs.add_log(job.job_id, level, f"m{i}")
           for i, level in enumerate(["info", "warning", "error", "info"])]
    assert all(ids) and ids == sorted(ids)
    assert [e.message for e in jobs.logs(job.job_id)] == ["m0", "m1", "m2", "m3"]
    assert [e.message for e in jobs.logs(job.job_id, min_level="warning")] == ["m1", "m2"]
    assert [e.message for e in jobs.logs(job.job_id, after=ids[1])] == ["m2", "m3"]
    assert [e.message for e in jobs.logs(job.job_id, limit=1)] == ["m0"]
    assert jobs.last_error(job.job_id).message == "m2"
    entry = jobs.logs(job.job_id)[2]
    assert entry.level == "error"


def test_log_entry_fields(jobs):
    job = jobs.create("alice", PROCESS)
    jobs.add_log(job.job_id, "error", "bad", code="ProcessParameterInvalid",
                 path=[{"node_id": "n", "process_id": "add", "parameter": "x"}],
                 data={"a": 1}, usage={"cpu": {"value": 1, "unit": "cpu-seconds"}})
    (entry,) = jobs.logs(job.job_id)
    assert entry.path[0]["node_id"] == "n" and entry.data == {"a": 1}
    assert entry.usage["cpu"]["value"] == 1 and entry.code == "ProcessParameterInvalid"


# --- retention ------------------------------------------------------------------------------------
def test_results_expire_after_the_retention_period(jobs, clock):
    job = queued(jobs)
    claim = jobs.claim("w")
    jobs.record_assets(job.job_id, claim.run_id, [{"name": "a.tif"}])
    jobs.finish(job.job_id, claim.run_id, None)
    clock.advance(days=29)
    assert jobs.expire_results(timedelta(days=30)) == []
    clock.advance(days=2)
    assert jobs.expire_results(timedelta(days=30)) == [(job.job_id, claim.run_id)]
    got = jobs.get(job.job_id)
    assert (got.status, got.asset_count, got.results_run) == ("created", 0, None)
    assert jobs.logs(job.job_id)[-1].code == "ResultsExpired"
    assert jobs.expire_results(timedelta(days=30)) == []


# --- fair queueing and per-user limits (issue 16) ---------------------------------------------
def test_claims_go_round_robin_across_users(jobs, clock):
    """Alice queued ten jobs before Bob's one: Bob's is the second to run, not the eleventh."""
    alice = []
    for _ in range(10):
        alice.append(queued(jobs).job_id)
        clock.advance(seconds=1)
    bob = queued(jobs, "bob").job_id
    order = []
    for i in range(11):
        clock.advance(seconds=1)
        claim = jobs.claim(f"w{i}")
        order.append(claim.job.job_id)
        assert jobs.finish(claim.job.job_id, claim.run_id, None)
    assert order[:2] == [alice[0], bob]
    assert order[2:] == alice[1:]  # each user's own jobs in their order


def test_fewest_running_goes_first(jobs, clock):
    ids = []
    for user in ("alice", "alice", "bob", "bob"):
        ids.append(queued(jobs, user).job_id)
        clock.advance(seconds=1)
    a1, a2, b1, b2 = ids
    claimed = [jobs.claim(f"w{i}").job.job_id for i in range(4)]  # all keep running
    assert claimed == [a1, b1, a2, b2]


def test_the_running_limit_per_user_holds_jobs_back(jobs, clock):
    ids = []
    for _ in range(3):
        ids.append(queued(jobs).job_id)
        clock.advance(seconds=1)
    first = jobs.claim("w1", max_running_per_user=2)
    second = jobs.claim("w2", max_running_per_user=2)
    assert [first.job.job_id, second.job.job_id] == ids[:2]
    assert jobs.claim("w3", max_running_per_user=2) is None  # alice has 2 running
    bob = queued(jobs, "bob").job_id
    assert jobs.claim("w3", max_running_per_user=2).job.job_id == bob
    jobs.finish(ids[0], first.run_id, None)
    assert jobs.claim("w1", max_running_per_user=2).job.job_id == ids[2]


def test_concurrent_claims_keep_the_running_limit(url, database):
    """Eight workers with their own connections race for one user's 20 jobs with a limit of
    3 running: never more than 3 are claimed."""
    jobs = JobStore(database)
    for _ in range(20):
        queued(jobs)

    def claims(store: JobStore, name: str) -> Iterator[st.Claim]:
        for _ in range(5):
            if (claim := store.claim(name, max_running_per_user=3)) is not None:
                yield claim

    claimed = race_workers(url, 8, claims)
    assert len(claimed) == 3 == len(set(claimed))
    assert len(jobs.list("alice", status="running")[0]) == 3


def test_the_queued_limit_per_user_answers_429(jobs):
    ids = [jobs.create("alice", PROCESS).job_id for _ in range(3)]
    assert jobs.start(ids[0], "alice", max_queued=2) is None
    assert jobs.start(ids[1], "alice", max_queued=2) is None
    assert jobs.start(ids[1], "alice", max_queued=2) == ""  # queued already: no effect
    with pytest.raises(errors.TooManyRequests) as info:
        jobs.start(ids[2], "alice", max_queued=2)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "30"
    assert "2 batch jobs queued" in info.value.message
    assert jobs.get(ids[2]).status == "created"
    bob = jobs.create("bob", PROCESS).job_id
    assert jobs.start(bob, "bob", max_queued=2) is None  # per user
    jobs.claim("w")  # one of alice's starts running: room for one more queued
    assert jobs.start(ids[2], "alice", max_queued=2) is None
