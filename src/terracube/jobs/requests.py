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
from terracube.processing.limits import (
    JOB_LOWERABLE,
    job_limit_options,
    limit_parameters,
)
from terracube.processing.run import check_structure

_JOB_ID = re.compile(r"^[\w\-.~]+$")
EDITABLE = ("title", "description", "process", "plan", "budget", "log_level")
READ_ONLY = ("id", "status", "progress", "created", "updated", "costs", "usage", "links")
# Keys of a POST /jobs or POST /result body that are not job options (CDSE collects every other
# top-level key as a job option, and the client nests them under `job_options`).
_BODY_KEYS = ("process", "title", "description", "plan", "budget", "job_options")

# The processing-parameters extension (GET /processing_parameters): every option a batch job
# (`create_job_parameters`) or a synchronous request (`synchronous_parameters`) takes.
# `log_level` is honoured; the resource options CDSE notebooks pass are accepted so that their
# code runs unchanged, but have no effect (terracube sizes its workers by its own settings).
_LOG_LEVEL_PARAMETER = {
    "name": "log_level", "optional": True, "default": "info",
    "description": "The minimum severity of the log entries the job keeps (openEO log_level); "
                   "also accepted as a top-level property of the body.",
    "schema": {"type": "string", "enum": ["debug", "info", "warning", "error"]}}
_COMPATIBILITY = (
    ("driver-memory", "8G", {"type": "string"}),
    ("driver-memoryOverhead", "2G", {"type": "string"}),
    ("driver-cores", 1, {"type": "integer", "minimum": 1}),
    ("executor-memory", "2G", {"type": "string"}),
    ("executor-memoryOverhead", "1G", {"type": "string"}),
    ("executor-cores", 1, {"type": "integer", "minimum": 1}),
    ("executor-threads-jvm", 10, {"type": "integer", "minimum": 1}),
    ("max-executors", 20, {"type": "integer", "minimum": 1}),
    ("python-memory", None, {"type": ["string", "null"]}),
    ("soft-errors", False, {"type": ["boolean", "number"]}),
    ("udf-dependency-archives", None, {"type": ["array", "null"]}),
    ("image-name", None, {"type": ["string", "null"]}),
)
COMPATIBILITY_OPTIONS = frozenset(name for name, _, _ in _COMPATIBILITY)


def processing_parameters(settings: Any = None) -> dict[str, list[dict[str, Any]]]:
    """GET /processing_parameters: the job options and synchronous-request options, and the
    server's limits (from `settings`, processing/limits.py) with their default and maximum."""
    limits = limit_parameters(settings) if settings is not None else {}
    compat = [{"name": name, "optional": True, "default": default, "schema": schema,
               "description": "Accepted for compatibility with CDSE job options; no effect "
                              "on terracube, whose workers are sized by the server's "
                              "settings (see docs/administration)."}
              for name, default, schema in _COMPATIBILITY]
    return {"create_job_parameters": [_LOG_LEVEL_PARAMETER, *limits.get("job", []), *compat],
            "synchronous_parameters": [_LOG_LEVEL_PARAMETER, *limits.get("sync", []),
                                       *compat]}


def job_options(body: dict[str, Any]) -> dict[str, Any]:
    """The job options of a body: nested under `job_options` (the client) and flat at the top
    level (CDSE's other form), nested ones winning. `log_level` is checked (BadRequest)."""
    nested = body.get("job_options")
    if nested is not None and not isinstance(nested, dict):
        raise errors.BadRequest("'job_options' must be an object of option names and values "
                                "(GET /processing_parameters lists them).")
    options = {k: v for k, v in body.items() if k not in _BODY_KEYS}
    options.update(nested or {})
    if "log_level" in options:
        try:
            options["log_level"] = check_level(options["log_level"])
        except ValueError as exc:
            raise errors.BadRequest(str(exc)) from None
    return options


def ignored_options(options: dict[str, Any]) -> list[str]:
    """The names of job options terracube accepts but does not apply (for a log warning)."""
    # max-bytes/max-pixels limit synchronous requests only: a job gets the warning for them
    return sorted(name for name in options
                  if name != "log_level" and name not in JOB_LOWERABLE)


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
            raise errors.BudgetInvalid("'budget' must be a number >= 0 (in the currency of "
                                       "GET / billing) or null for no limit.")
        fields["budget"] = None if budget is None else float(budget)
    if creating:
        options = job_options(body)
        if "log_level" in options:
            fields["log_level"] = options["log_level"]
        own = job_limit_options(options)
        if "max-seconds" in own:
            fields["max_seconds"] = own["max-seconds"]
    elif "log_level" in body:
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
