"""The database's SQLite busy timeout: how long a write waits for a lock another process
holds (TERRACUBE_DATABASE_BUSY_TIMEOUT_SECONDS; the fault test in tests/jobs/test_faults.py
holds the lock of a running server's database longer than that)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from terracube.db import BUSY_TIMEOUT_SECONDS, open_database
from terracube.settings import Settings


def test_a_write_waits_the_busy_timeout_for_a_locked_database_then_fails(tmp_path):
    url = f"sqlite:///{tmp_path / 'terracube.db'}"
    db = open_database(url, busy_timeout_seconds=0.5)
    holder = sqlite3.connect(tmp_path / "terracube.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"), db.session() as session:
            session.execute(text("CREATE TABLE t (x INTEGER)"))
        waited = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.4 <= waited < BUSY_TIMEOUT_SECONDS / 2, waited
    with db.session() as session:  # the lock is gone: writes work again
        session.execute(text("CREATE TABLE t (x INTEGER)"))
    db.dispose()


def test_the_busy_timeout_is_a_setting(monkeypatch, tmp_path):
    assert Settings(data_dir=tmp_path).database_busy_timeout_seconds == BUSY_TIMEOUT_SECONDS
    monkeypatch.setenv("TERRACUBE_DATABASE_BUSY_TIMEOUT_SECONDS", "3")
    assert Settings(data_dir=tmp_path).database_busy_timeout_seconds == 3
