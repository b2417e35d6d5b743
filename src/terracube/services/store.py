"""Secondary web services in the SQL database: the tables and ServiceStore (scoped per user)."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    delete,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from terracube import errors
from terracube.db import Base, Database

# What POST /services and PATCH /services/{id} may set (the API's request bodies).
WRITABLE = ("title", "description", "process", "type", "enabled", "configuration", "plan",
            "budget", "log_level")
LOG_LEVELS = ("error", "warning", "info", "debug")


class Service(Base):
    """One secondary web service of one user; `record` holds what the user stored."""

    __tablename__ = "services"

    service_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    record: Mapped[dict] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServiceLog(Base):
    """One log entry of a service (e.g. a tile that failed); `id` is the API's offset."""

    __tablename__ = "service_logs"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    service_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("services.service_id", ondelete="CASCADE"), index=True)
    level: Mapped[str] = mapped_column(String(8))
    code: Mapped[str | None] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ServiceUsage(Base):
    """What rendering a service's tiles used so far: tiles rendered (cache hits are free) and
    the wall time spent rendering them."""

    __tablename__ = "service_usage"

    service_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("services.service_id", ondelete="CASCADE"), primary_key=True)
    tiles: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)


def _not_found(service_id: str) -> errors.OpenEOError:
    return errors.ServiceNotFound(f"There is no service '{service_id}' of yours; GET /services "
                                  "lists them.")


def rfc3339(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite gives naive datetimes back
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ServiceStore:
    """The secondary web services of all users; reads and writes are scoped to one user,
    except `for_tiles`, which the (unauthenticated) tile URL uses with the service's id."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, user_id: str, record: dict[str, Any]) -> str:
        service_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        with self.db.session() as s:
            s.add(Service(service_id=service_id, user_id=user_id, record=record, created=now,
                          updated=now))
        return service_id

    def get(self, user_id: str, service_id: str) -> dict[str, Any]:
        """The stored record with `id` and `created`; ServiceNotFound for others' services."""
        with self.db.session() as s:
            row = s.get(Service, service_id)
            if row is None or row.user_id != user_id:
                raise _not_found(service_id)
            return _with_metadata(row)

    def for_tiles(self, service_id: str) -> tuple[str, dict[str, Any]]:
        """(owner, record) of a service by id alone (the id is the tile URL's secret)."""
        with self.db.session() as s:
            row = s.get(Service, service_id)
            if row is None:
                raise errors.ServiceNotFound(f"There is no service '{service_id}'.")
            return row.user_id, _with_metadata(row)

    def all_of(self, user_id: str) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(Service).where(Service.user_id == user_id)
                             .order_by(Service.created, Service.service_id))
            return [_with_metadata(row) for row in rows]

    def update(self, user_id: str, service_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply `changes` to the stored record; returns the new record."""
        with self.db.session() as s:
            row = s.get(Service, service_id)
            if row is None or row.user_id != user_id:
                raise _not_found(service_id)
            row.record = {**copy.deepcopy(row.record), **changes}
            row.updated = datetime.now(UTC)
            return _with_metadata(row)

    def delete(self, user_id: str, service_id: str) -> None:
        with self.db.session() as s:
            deleted = s.execute(delete(Service).where(
                Service.user_id == user_id,
                Service.service_id == service_id)).rowcount  # type: ignore[attr-defined]
        if not deleted:
            raise _not_found(service_id)

    # --- usage ----------------------------------------------------------------------------
    def add_usage(self, service_id: str, seconds: float) -> None:
        """Count one rendered tile that took `seconds` (an atomic increment: tiles render in
        parallel)."""
        for _ in range(2):  # the first tile of two at once: one insert wins, the other adds
            with self.db.session() as s:
                done = s.execute(update(ServiceUsage)
                                 .where(ServiceUsage.service_id == service_id)
                                 .values(tiles=ServiceUsage.tiles + 1,
                                         seconds=ServiceUsage.seconds + seconds)
                                 ).rowcount  # type: ignore[attr-defined]
            if done:
                return
            try:
                with self.db.session() as s:
                    s.add(ServiceUsage(service_id=service_id, tiles=1, seconds=seconds))
                return
            except IntegrityError:
                continue

    def usage(self, service_id: str) -> dict[str, Any]:
        """The service's usage in the API's form (zeros before its first rendered tile)."""
        with self.db.session() as s:
            row = s.get(ServiceUsage, service_id)
            seconds, tiles = (row.seconds, row.tiles) if row is not None else (0.0, 0)
        return {"duration": {"value": round(seconds, 3), "unit": "seconds"},
                "tiles": {"value": tiles, "unit": "tiles"}}

    # --- logs -----------------------------------------------------------------------------
    def log(self, service_id: str, level: str, message: str, code: str | None = None) -> None:
        with self.db.session() as s:
            s.add(ServiceLog(service_id=service_id, level=level, code=code, message=message,
                             time=datetime.now(UTC)))

    def logs(self, user_id: str, service_id: str, offset: int | None = None,
             levels: tuple[str, ...] = LOG_LEVELS) -> list[dict[str, Any]]:
        """The entries after `offset` (an entry id) at `levels`, oldest first."""
        self.get(user_id, service_id)  # ServiceNotFound for others' services
        query = select(ServiceLog).where(ServiceLog.service_id == service_id,
                                         ServiceLog.level.in_(levels))
        if offset is not None:
            query = query.where(ServiceLog.id > offset)
        with self.db.session() as s:
            rows = s.scalars(query.order_by(ServiceLog.id))
            return [{"id": str(row.id), "level": row.level, "message": row.message,
                     "time": rfc3339(row.time), **({"code": row.code} if row.code else {})}
                    for row in rows]


def _with_metadata(row: Service) -> dict[str, Any]:
    return {"id": row.service_id, **copy.deepcopy(row.record), "created": rfc3339(row.created),
            "updated": rfc3339(row.updated)}
