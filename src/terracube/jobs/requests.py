"""What the batch-job endpoints accept: job ids, the bodies of POST/PATCH /jobs, log queries.

Each check raises the openEO error the API names (ProcessGraphMissing, PropertyNotEditable,
JobNotFound, BadRequest), so the routes only call them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from terracube import errors
from terracube.jobs.logs import check_level
from terracube.processing.run import check_structure

_JOB_ID = re.compile(r"^[\w\-.~]+$")
EDITABLE = ("title", "description", "process", "plan", "budget", "log_level")
READ_ONLY = ("id", "status", "progress", "created", "updated", "costs", "usage", "links")


def is_job_id(job_id: str) -> bool:
    """Whether `job_id` can be a job id at all (anything else is no job of anybody's)."""
    return bool(_JOB_ID.match(job_id))


def checked_job_id(job_id: str) -> str:
    if not is_job_id(job_id):
        raise errors.JobNotFound(f"The batch job '{job_id}' does not exist.")
    return job_id


def job_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The job properties of a POST (`creating`) or PATCH body, checked."""
    fields: dict[str, Any] = {}
    if creating and "process" not in body:
        raise errors.ProcessGraphMissing(
            "The request body needs 'process': {\"process_graph\": {...}}.")
    if not creating:
        for name in body:
            if name in READ_ONLY or name not in EDITABLE:
                raise errors.PropertyNotEditable(
                    f"The property '{name}' cannot be changed; editable are "
                    f"{', '.join(EDITABLE)}.")
    if "process" in body:
        process = body["process"]
        if not isinstance(process, dict) or not isinstance(process.get("process_graph"), dict):
            raise errors.ProcessGraphMissing(
                "'process' must be an object with a 'process_graph'.")
        # The structure now; processes and parameters when the job runs (UDPs may change).
        check_structure(process)
        fields["process"] = process
    for name in ("title", "description", "plan"):
        if name in body:
            if body[name] is not None and not isinstance(body[name], str):
                raise errors.BadRequest(f"'{name}' must be a string or null.")
            fields[name] = body[name]
    if "budget" in body:
        budget = body["budget"]
        if budget is not None and (isinstance(budget, bool)
                                   or not isinstance(budget, (int, float)) or budget < 0):
            raise errors.BadRequest("'budget' must be a number >= 0 or null.")
        fields["budget"] = None if budget is None else float(budget)
    if "log_level" in body:
        try:
            fields["log_level"] = check_level(body["log_level"])
        except ValueError as exc:
            raise errors.BadRequest(str(exc)) from None
    return fields


@dataclass(frozen=True)
class LogQuery:
    """GET /jobs/{id}/logs: entries after `after` (an entry id), at or above `level`."""

    level: str
    after: int | None


def log_query(level: str | None, offset: str | None) -> LogQuery:
    level = level or "debug"
    try:
        check_level(level, "level")
    except ValueError as exc:
        raise errors.BadRequest(str(exc)) from None
    after = None
    if offset:
        try:
            after = int(offset)
        except ValueError:
            raise errors.BadRequest(f"'offset' must be the id of a log entry (a number), got "
                                    f"{offset!r}.") from None
    return LogQuery(level, after)


def wants_partial(raw: str | None) -> bool:
    """`?partial`, `?partial=true` or `?partial=1` (the parameter allows an empty value)."""
    return raw is not None and raw.lower() in ("", "true", "1")
