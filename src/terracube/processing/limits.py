"""The server's limits as users see them, and the size check of synchronous requests.

Limits come from the settings (docs/administration/limits.md) and are listed at
GET /processing_parameters with their default, maximum and meaning. A synchronous request
(POST /result) is dry-run first (processing/explain.py): when a node would hold, or its loads
would read, more than the limits allow, or the estimate says it takes too long, the request is
refused before it runs with ProcessGraphComplexity (400, the spec's code for "use a batch job
instead"), naming the node. While it runs, `max-seconds` and `max-memory` hold (the route and
executor.Cancel stop it). A request may lower its own limits (`max-bytes`, `max-pixels`,
`max-seconds`, `max-memory` as options), never raise them. Batch jobs run under
`job_max_seconds` (their option `max-seconds` may lower it; jobs/worker.py stops them).
"""

from __future__ import annotations

from typing import Any

from terracube import errors
from terracube.engine.evaluate import Services
from terracube.processing.estimate import estimated_seconds
from terracube.processing.explain import Explanation, explain_process

# Synchronous options that lower a limit: option name -> setting.
SYNC_LIMITS = {"max-bytes": "sync_max_bytes", "max-pixels": "sync_max_pixels",
               "max-seconds": "sync_max_seconds", "max-memory": "sync_max_memory"}
LIMIT_OPTIONS = frozenset(SYNC_LIMITS)

_SYNC_MEANINGS = {
    "max-bytes": "Most bytes one node of the request may hold (uncompressed), or its loads may "
                 "read, by the dry run (POST /explain). A bigger request is refused before it "
                 "runs: run it as a batch job.",
    "max-pixels": "Most values (pixels x dates x bands) one node may hold or the loads may "
                  "read.",
    "max-seconds": "Longest estimated duration (GET /jobs/{id}/estimate's rates) of the "
                   "request, and the longest it may compute.",
    "max-memory": "Most bytes of intermediate results the request's computation may hold at "
                  "once (measured as its tasks finish); a request over it is stopped: run it "
                  "as a batch job or make it smaller.",
}
# Options that lower a limit of one batch job: option name -> setting.
JOB_LOWERABLE = {"max-seconds": "job_max_seconds"}
_JOB_MEANINGS = {
    "max-seconds": "Longest a batch job may run (wall-clock seconds); a job still running "
                   "then is stopped and ends as error, its log saying so.",
}
# Limits of batch jobs and of users: (name, setting, meaning, JSON type).
_JOB_LIMITS: tuple[tuple[str, str, str, str | list[str]], ...] = (
    ("memory-limit", "memory_limit", "Memory of each Dask worker that computes a job (the "
     "server's setting TERRACUBE_MEMORY_LIMIT; null: Dask's choice).", ["string", "null"]),
    ("max-running-jobs", "max_running_jobs_per_user", "Batch jobs of one user that run at the "
     "same time; further ones wait in the queue.", "integer"),
    ("max-queued-jobs", "max_queued_jobs_per_user", "Batch jobs one user may have queued; one "
     "more is refused with 429.", "integer"),
    ("max-sync-requests", "max_sync_requests_per_user", "Synchronous requests of one user that "
     "run at the same time; one more is refused with 429.", "integer"),
    ("max-request-body-bytes", "max_request_body_bytes", "Largest request body (413 beyond), "
     "file uploads excepted.", "integer"),
    ("storage-quota-bytes", "storage_quota_bytes", "Storage quota of each user's workspace: "
     "the largest upload (PUT /files) and all files together.", "integer"),
    # Python UDFs (docs/administration/udf-sandbox.md; GET /udf_runtimes says the same)
    ("udf-cpu-seconds", "udf_cpu_seconds", "CPU seconds of one UDF process.", "integer"),
    ("udf-memory-bytes", "udf_memory_bytes", "Memory (address space) of one UDF process.",
     "integer"),
    ("udf-timeout-seconds", "udf_timeout_seconds", "Wall-clock seconds a UDF may take for one "
     "block.", "number"),
    ("udf-dependencies", "udf_dependencies", "Packages a UDF declares (PEP 723 '# /// script' "
     "dependencies) that the runtime lacks: 'any' are installed before it runs, 'allow-list' "
     "only those of udf-allowed-packages, 'off' none (the UDF is refused).", "string"),
    ("udf-allowed-packages", "udf_allowed_packages", "Packages UDFs may have installed "
     "(comma-separated) when udf-dependencies is 'allow-list'.", "string"),
)


def limit_parameters(settings: Any) -> dict[str, list[dict[str, Any]]]:
    """The limits as processing parameters: `sync` ones a request may lower; `job` ones a job
    may lower (JOB_LOWERABLE) and ones fixed by the administrator (listed so they can be
    seen; a value given for them is ignored)."""
    sync = []
    for name, setting in SYNC_LIMITS.items():
        value = getattr(settings, setting)
        kind = "integer" if isinstance(value, int) else "number"
        sync.append({"name": name, "optional": True, "default": value,
                     "description": f"{_SYNC_MEANINGS[name]} Setting "
                                    f"TERRACUBE_{setting.upper()}; a request may lower it.",
                     "schema": {"type": kind, "minimum": 0, "maximum": value}})
    job = []
    for name, setting in JOB_LOWERABLE.items():
        value = getattr(settings, setting)
        job.append({"name": name, "optional": True, "default": value,
                    "description": f"{_JOB_MEANINGS[name]} Setting "
                                   f"TERRACUBE_{setting.upper()}; a job may lower it.",
                    "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": value}})
    for name, setting, meaning, json_type in _JOB_LIMITS:
        if not hasattr(settings, setting):
            continue
        value = getattr(settings, setting)
        schema: dict[str, Any] = {"type": json_type}
        if isinstance(value, int) and not isinstance(value, bool):
            schema.update(minimum=value, maximum=value)
        job.append({"name": name, "optional": True, "default": value,
                    "description": f"{meaning} Fixed by the administrator (setting "
                                   f"TERRACUBE_{setting.upper()}); shown here, not changeable.",
                    "schema": schema})
    return {"sync": sync, "job": [*job]}


def sync_limits(settings: Any, options: dict[str, Any]) -> dict[str, float]:
    """The limits of one synchronous request: the settings, lowered by its options."""
    limits: dict[str, float] = {}
    for name, setting in SYNC_LIMITS.items():
        limit = float(getattr(settings, setting))
        if name in options:
            value = options[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise errors.BadRequest(f"The option '{name}' must be a number of at least 0 "
                                        f"(at most {limit:g}).")
            limit = min(limit, float(value))
        limits[name] = limit
    return limits


def job_limit_options(options: dict[str, Any]) -> dict[str, float]:
    """The limits a new batch job sets with its options (`max-seconds`), checked: BadRequest
    for a value that is not a number above 0. A value above the setting is allowed here (the
    setting may change before the job runs); the lower of the two applies."""
    own: dict[str, float] = {}
    for name in JOB_LOWERABLE:
        if name not in options:
            continue
        value = options[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise errors.BadRequest(f"The job option '{name}' must be a number above 0 (GET "
                                    "/processing_parameters shows the server's maximum).")
        own[name] = float(value)
    return own


def job_seconds(settings: Any, own: float | None) -> tuple[float, str]:
    """The time limit of a batch job run and where it comes from (for its log message)."""
    limit = float(settings.job_max_seconds)
    if own is not None and own < limit:
        return own, "the job option max-seconds"
    return limit, "the server's setting TERRACUBE_JOB_MAX_SECONDS"


def check_sync_request(process: dict[str, Any], services: Services,
                       options: dict[str, Any] | None = None) -> Explanation | None:
    """Dry-run a synchronous request and refuse it (ProcessGraphComplexity) when it is too big
    for the limits; the explanation, or None when the dry run failed (the real run then
    reports the error with its full context)."""
    if services.settings is None:
        return None
    limits = sync_limits(services.settings, options or {})
    explanation = explain_process(process, services)
    if explanation.error is not None:
        return None
    for node in explanation.nodes:
        held, read = node.get("bytes_to_hold", 0), node.get("bytes_to_read", 0)
        values = max(_values(node), node.get("pixels_to_read", 0))
        if max(held, read) > limits["max-bytes"]:
            what = "hold" if held >= read else "read"
            _refuse(node, f"would {what} {_size(max(held, read))}, more than the "
                          f"{_size(limits['max-bytes'])} a synchronous request may (option "
                          "or setting max-bytes / TERRACUBE_SYNC_MAX_BYTES)")
        if values > limits["max-pixels"]:
            _refuse(node, f"would hold or read {values:,} values, more than the "
                          f"{int(limits['max-pixels']):,} a synchronous request may (setting "
                          "TERRACUBE_SYNC_MAX_PIXELS)")
    seconds = estimated_seconds(explanation, services)
    if not explanation.unestimable and seconds > limits["max-seconds"]:
        largest = explanation.largest_node() or {"id": None}
        _refuse(largest, f"makes the request take about {seconds:,.0f} s by the estimate, "
                         f"more than the {limits['max-seconds']:g} s a synchronous request "
                         "may (setting TERRACUBE_SYNC_MAX_SECONDS)")
    return explanation


def _values(node: dict[str, Any]) -> int:
    shape = node.get("shape") or {}
    total = 1
    for n in shape.values():
        total *= int(n)
    return total if shape else 0


def _refuse(node: dict[str, Any], why: str) -> None:
    what = f"This {node['process_id']}" if node.get("process_id") else "This request"
    raise errors.ProcessGraphComplexity(
        f"{what} {why}. Run it as a batch job (POST /jobs, or "
        "connection.create_job(...) with the client), or make it smaller: a smaller extent, "
        "fewer dates or bands, a coarser resolution. POST /explain shows every node's size.",
        node_id=node.get("id"))


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1000
    return f"{n:,.1f} TB"
