"""The SQL database: engine, sessions and the declarative base every table derives from.

SQLite in the data folder by default (WAL mode, so the server and the CLI can use it at the
same time); any SQLAlchemy URL, e.g. PostgreSQL, via TERRACUBE_DATABASE_URL.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

# The modules that define tables, imported before the tables are created. A feature with its
# own tables (e.g. "terracube.jobs.store") adds its module here; no discovery by reflection.
MODEL_MODULES: tuple[str, ...] = (
    "terracube.auth.tables",
    "terracube.auth.admins",
    "terracube.udp.store",
    "terracube.workspace.retention",
    "terracube.jobs.store",
    "terracube.services.store",
    "terracube.processing.costs",
    "terracube.jobs.sync_logs",
)


class Base(DeclarativeBase):
    """Declarative base of all terracube tables (one metadata for the whole database)."""


# How long SQLite waits for a lock another connection or process holds before it gives up
# ("database is locked"); TERRACUBE_DATABASE_BUSY_TIMEOUT_SECONDS for the server and workers.
BUSY_TIMEOUT_SECONDS = 30.0


class Database:
    """One engine and its session factory; build once per process and pass it along."""

    def __init__(self, url: str, busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict = {}
        if self.is_sqlite:
            # Sessions are used from FastAPI's worker threads; each one is short-lived.
            kwargs["connect_args"] = {"check_same_thread": False,
                                      "timeout": busy_timeout_seconds}
            if self.url.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool  # one shared in-memory database
            else:
                Path(self.url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs["pool_pre_ping"] = True
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            event.listen(self.engine, "connect",
                         functools.partial(_configure_sqlite, busy_ms=int(busy_timeout_seconds
                                                                          * 1000)))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on an exception."""
        with self._sessions.begin() as session:
            yield session

    def create_tables(self, modules: tuple[str, ...] = MODEL_MODULES) -> None:
        """Create the tables of the given model modules that do not exist yet."""
        for name in modules:
            importlib.import_module(name)
        Base.metadata.create_all(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _configure_sqlite(dbapi_connection, _record, *, busy_ms: int) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms:d}")
    finally:
        cursor.close()


def open_database(url: str, busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS) -> Database:
    """The database at `url` with all tables created."""
    db = Database(url, busy_timeout_seconds)
    db.create_tables()
    return db
