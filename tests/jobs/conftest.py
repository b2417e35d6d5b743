"""Fixtures of the batch job tests: a database with two users, data folders with the sample
collection, worker processes, and (when it can be started) a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from tests.support.data import data_dir_with_samples, sqlite_url
from tests.support.postgres import postgres_missing, postgres_server
from tests.support.processes import WorkerProcess

from terracube.auth.users import UserStore
from terracube.db import Database, open_database
from terracube.jobs.store import JobStore
from terracube.settings import Settings


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(sqlite_url(tmp_path))
    users = UserStore(database)
    users.add("alice", "wonderland")
    users.add("bob", "builder")
    yield database
    database.dispose()


@pytest.fixture
def store(db: Database) -> JobStore:
    return JobStore(db)


@pytest.fixture
def data_dir(tmp_path: Path, sample_data_dir: Path) -> Path:
    data = data_dir_with_samples(tmp_path / "data", sample_data_dir)
    # Cheap password hashes: logging in is not what these tests are about.
    users = UserStore(open_database(Settings(data_dir=data).database_url),
                      PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    users.add("alice", "wonderland")
    users.add("bob", "builder")
    users.db.dispose()
    return data


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Collects the worker processes a test starts and stops them afterwards."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


# --- PostgreSQL -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on loopback for this test session, in a temporary folder (skipped
    with the reason when none can be started here)."""
    problem = postgres_missing()
    if problem:
        pytest.skip(problem)
    with postgres_server() as url:
        yield url
