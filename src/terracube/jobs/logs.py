"""Log levels of batch jobs and the openEO form of a log entry (GET /jobs/{job_id}/logs)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from terracube import errors

# From low to high severity (openEO API 1.2, schema `log_level`).
LEVELS = ("debug", "info", "warning", "error")
DEFAULT_JOB_LOG_LEVEL = "info"  # schema `min_log_level_default`


def level_rank(level: str) -> int:
    return LEVELS.index(level)


def check_level(level: Any, what: str = "log_level") -> str:
    """`level` if it is one of the openEO log levels, else ValueError naming them."""
    if level not in LEVELS:
        raise ValueError(f"{what} must be one of {', '.join(LEVELS)}, not {level!r}.")
    return level


def levels_from(minimum: str) -> tuple[str, ...]:
    """The levels at or above `minimum`."""
    return LEVELS[level_rank(minimum):]


def stricter(*levels: str | None) -> str:
    """The highest of the given minimum levels (None counts as debug)."""
    return max((lv or "debug" for lv in levels), key=level_rank)


def node_path(node_id: str | None, process_id: str | None = None,
              parameter: str | None = None) -> list[dict[str, Any]] | None:
    """The `path` of a log entry for a node of the top-level process graph."""
    if not node_id:
        return None
    step: dict[str, Any] = {"node_id": node_id}
    if process_id:
        step["process_id"] = process_id
    if parameter:
        step["parameter"] = parameter
    return [step]


def error_entry(exc: errors.OpenEOError, graph: dict | None = None) -> dict[str, Any]:
    """The fields of an error log entry for an openEO error raised while running a graph."""
    process_id = None
    if graph and exc.node_id in graph and isinstance(graph[exc.node_id], dict):
        process_id = graph[exc.node_id].get("process_id")
    parameter = exc.argument if exc.argument and exc.argument.isidentifier() else None
    return {"level": "error", "code": exc.code, "message": exc.message,
            "path": node_path(exc.node_id, process_id, parameter)}


def rfc3339(value: datetime | None) -> str | None:
    """UTC date-time as RFC 3339 with a Z (SQLite hands back naive UTC values)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
