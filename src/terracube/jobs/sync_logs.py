"""The logs of synchronous requests (POST /result): collected while the request computes,
at or above its `log_level`, kept for a week and reachable through the response's
`Link: <…/logs/{request_id}>; rel="monitor"` (openEO API 1.2, POST /result), shaped like the
log entries of batch jobs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from terracube import errors
from terracube.db import Base, Database
from terracube.jobs.logs import DEFAULT_JOB_LOG_LEVEL, level_rank, node_path, rfc3339

KEEP_FOR = timedelta(days=7)


class SyncRequestLog(Base):
    """The log of one synchronous request (its entries as one JSON list: they are few)."""

    __tablename__ = "sync_request_logs"

    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("users.user_id", ondelete="CASCADE"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    level: Mapped[str] = mapped_column(String(8))  # the request's log_level
    entries: Mapped[list] = mapped_column(JSON)


class SyncLog:
    """Collects the entries of one request; the engine's `JobLog` port (callable with
    level, message, node id, data, code) and thread-safe (dask threads log too)."""

    def __init__(self, min_level: str | None, graph: Any = None) -> None:
        self.min_level = min_level or DEFAULT_JOB_LOG_LEVEL
        self.graph = graph if isinstance(graph, dict) else {}
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, level: str, message: str, node_id: str | None = None, *,
                 data: Any = None, code: str | None = None, usage: Any = None) -> None:
        if level_rank(level) < level_rank(self.min_level):
            return
        node = self.graph.get(node_id) if node_id else None
        process_id = node.get("process_id") if isinstance(node, dict) else None
        entry: dict[str, Any] = {"level": level, "message": message,
                                 "time": rfc3339(datetime.now(UTC))}
        if code:
            entry["code"] = code
        path = node_path(node_id, process_id)
        if path:
            entry["path"] = path
        if data is not None:
            entry["data"] = data
        if usage:
            entry["usage"] = usage
        with self._lock:
            entry["id"] = str(len(self.entries) + 1)
            entry["links"] = []
            self.entries.append(entry)


class SyncLogStore:
    """Stores the collected logs; a user reads only their own."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def save(self, request_id: str, user_id: str, log: SyncLog) -> None:
        now = datetime.now(UTC)
        with self.db.session() as session:
            session.add(SyncRequestLog(request_id=request_id, user_id=user_id, created=now,
                                       level=log.min_level, entries=list(log.entries)))
            session.execute(delete(SyncRequestLog).where(
                SyncRequestLog.created < now - KEEP_FOR))

    def document(self, request_id: str, user_id: str) -> dict[str, Any]:
        """GET /logs/{request_id}: `logs` and `links`, like a job's logs (no parameters)."""
        with self.db.session() as session:
            row = session.get(SyncRequestLog, request_id)
            if row is None or row.user_id != user_id:
                raise errors.NotFound(
                    f"No log of a synchronous request '{request_id}' (they are kept for "
                    f"{KEEP_FOR.days} days).")
            return {"level": row.level, "logs": list(row.entries), "links": []}
