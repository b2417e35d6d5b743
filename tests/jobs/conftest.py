"""Fixtures of the batch job tests: a database with two users, data folders with the sample
collection, worker processes, and (when it can be started) a real PostgreSQL server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from jobs_support import WorkerProcess, job_data_dir, sqlite_url

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
    data = job_data_dir(tmp_path, sample_data_dir)
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
def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists():
            return folder
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server on loopback for this test session, in a temporary folder."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("PostgreSQL tests need the psycopg driver (pip install 'psycopg[binary]')")
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL tests need Debian's postgresql package (initdb, pg_ctl): "
                    "apt-get install postgresql")
    # Not under pytest's temporary folder: that one is private to root, which PostgreSQL
    # (running as the user postgres) could not enter.
    folder = Path(tempfile.mkdtemp(prefix="terracube-postgres-"))
    data = folder / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("PostgreSQL cannot run as root and there is no 'postgres' user")
        shutil.chown(folder, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "terracube",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    log = folder / "postgres.log"
    subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                    "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -k {folder}",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://terracube@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                        "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
