"""Data processing: POST /result (synchronous results), POST /validation and POST /explain
(a terracube extension: the dry run of a process graph, docs/user-guide/explain.md)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from terracube import errors
from terracube.api.deps import (
    BudgetsDep,
    CatalogDep,
    CurrentUser,
    ExecutorDep,
    FoldersDep,
    JobsDep,
    JsonObjectBody,
    OptionalUser,
    RegistryDep,
    SettingsDep,
    SyncLogsDep,
    api_url,
)
from terracube.api.responses import FileDownload
from terracube.api.user_limits import ConcurrencyLimiter
from terracube.executor import Cancel, Cancelled, cancellable
from terracube.jobs.requests import job_options
from terracube.jobs.results_access import UserJobResults
from terracube.jobs.sync_logs import SyncLog
from terracube.processing import costs as billing
from terracube.processing.estimate import estimate_if_possible
from terracube.processing.explain import explain_process
from terracube.processing.limits import check_sync_request, sync_limits
from terracube.processing.outputs import compute_result as run_and_compute
from terracube.processing.run import validate_process
from terracube.processing.scratch import ResultScratch, expected_result_bytes
from terracube.processing.services import build_services

router = APIRouter(tags=["Data Processing"])
logger = logging.getLogger(__name__)

# Sync computations run on threads of their own, not on the thread pool that serves the API's
# other (blocking) endpoints: long computations cannot starve GET /jobs and the like.
_SYNC_THREADS = 16
_POLL_S = 0.25  # how often a running request checks its time limit and its client

_PROCESS_BODY = {"content": {"application/json": {"schema": {
    "type": "object", "required": ["process_graph"],
    "properties": {"process_graph": {"type": "object"}}}}}}
_RESULT_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["process"],
    "properties": {"process": _PROCESS_BODY["content"]["application/json"]["schema"],
                   "budget": {"type": "number", "nullable": True},
                   "plan": {"type": "string", "nullable": True},
                   "log_level": {"type": "string"}}}}}}


class TemporaryFileResponse(FileDownload):
    """Sends a result file, then removes it (also when the client went away)."""

    def __init__(self, path: Path, remove: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(path, **kwargs)
        self.remove = remove

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await run_in_threadpool(self.remove)


@router.post("/result", operation_id="compute-result",
             openapi_extra={"requestBody": _RESULT_BODY},
             response_class=FileResponse, responses={200: {"description": "The result file."}})
async def compute_result(request: Request, user: CurrentUser, body: JsonObjectBody,
                         settings: SettingsDep, catalog: CatalogDep, registry: RegistryDep,
                         executor: ExecutorDep, jobs: JobsDep, folders: FoldersDep,
                         budgets: BudgetsDep, sync_logs: SyncLogsDep) -> FileResponse:
    """Run a process graph now and send its result as the response body; its log (at or
    above `log_level`) is linked from the `Link: <…>; rel="monitor"` header."""
    process = body.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("process_graph"), dict):
        raise errors.ProcessGraphMissing(
            "The request body needs 'process': {\"process_graph\": {...}}.")
    options = job_options(body)  # checked like a job's (log_level), nested or flat
    billing.checked_plan(body.get("plan"), settings)
    budget = billing.checked_budget(body.get("budget"))
    await run_in_threadpool(budgets.check, user.user_id)
    request_id = f"r-{uuid.uuid4().hex}"
    log = SyncLog(options.get("log_level"), process.get("process_graph"))
    services = build_services(settings, catalog, registry, user, executor=executor, log=log,
                              job_results=UserJobResults(jobs, folders, user.user_id))
    if budget is not None and settings.billing_rate > 0:
        guess = await run_in_threadpool(estimate_if_possible, process, services)
        if guess is not None:  # a UDF, say: its usage is stopped at the budget instead
            billing.check_budget(budget, billing.estimate_billing(guess, settings)["costs"],
                                 "this request")
    # Over the per-user limit of concurrent requests: 429 before anything is logged or counted.
    with _sync_limiter(request, settings.max_sync_requests_per_user).slot(user.user_id):
        log("debug", "Evaluating the process graph.")
        # The server process's CPU time while the request computes (other requests computing
        # at the same time count too; an external dask cluster's workers do not).
        cpu_before, started = time.process_time(), time.monotonic()
        limits = sync_limits(settings, options)
        seconds = limits["max-seconds"]
        cancel = Cancel(memory_limit=limits["max-memory"])
        scratch = _result_scratch(request, settings)

        def run() -> Any:
            with cancellable(cancel):
                try:
                    # A dry run first: too big for a synchronous request is refused before it
                    # runs; what runs is stopped at the time limit or when the client leaves.
                    explanation = check_sync_request(process, services, options)
                    expected = expected_result_bytes(explanation.outputs) \
                        if explanation is not None else None
                    return run_and_compute(process, services, scratch, expected)
                except Cancelled as exc:
                    raise _stopped_error(str(exc), seconds, cancel) from None

        result = None
        try:
            # Computing blocks, so it runs in a worker thread, not on the event loop.
            result = await _run_watched(request, run, cancel, seconds)
        except errors.OpenEOError as exc:
            log("error", exc.message, code=exc.code)
            raise
        finally:
            cpu = time.process_time() - cpu_before
            usage = {"duration": {"value": round(time.monotonic() - started, 3),
                                  "unit": "seconds"},
                     "cpu": {"value": round(cpu, 3), "unit": "cpu-seconds"}}
            costs = billing.costs_of(usage, settings)
            log("info", f"Done in {usage['duration']['value']:.1f} s (CPU {cpu:.1f} s); costs "
                        f"{costs:g} {settings.billing_currency}.", usage=usage)
            try:
                await run_in_threadpool(_account, budgets, sync_logs, user.user_id,
                                        request_id, log, cpu, costs)
            except BaseException:
                if result is not None:  # no response will send (and delete) it
                    await run_in_threadpool(result.remove)
                raise
    logs_url = api_url(request, f"/logs/{request_id}")
    return TemporaryFileResponse(result.path, result.remove, media_type=result.media_type,
                                 filename=result.filename,
                                 headers={"OpenEO-Costs": billing.costs_header(costs),
                                          "OpenEO-Identifier": request_id,
                                          "Link": f'<{logs_url}>; rel="monitor"'})


async def _run_watched(request: Request, run: Callable[[], Any], cancel: Cancel,
                       seconds: float) -> Any:
    """`run()` in a sync-computation thread; `cancel` is set when it is still running after
    `seconds` or when the client disconnects (its dask computation then stops between tasks
    and `run` raises). The event loop stays free meanwhile."""
    limiter = _sync_thread_limiter(request)
    task = asyncio.ensure_future(anyio.to_thread.run_sync(run, limiter=limiter))
    deadline = time.monotonic() + seconds
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=_POLL_S)
            if task.done():
                break
            if cancel.is_set():
                continue  # stopping: its tasks that run finish first
            if time.monotonic() > deadline:
                logger.warning("stopping a synchronous request: over its %g s limit", seconds)
                cancel.set("time")
            elif await request.is_disconnected():
                logger.warning("stopping a synchronous request: the client disconnected")
                cancel.set("disconnect")
    except BaseException:  # the request itself was cancelled (server stopping): stop the work
        cancel.set("disconnect")
        # A result that is written all the same is sent to nobody: deleted when it is done.
        task.add_done_callback(_remove_unsent)
        raise
    return task.result()


def _remove_unsent(task: asyncio.Future) -> None:
    if task.cancelled() or task.exception() is not None:
        return  # compute_result deleted its folder
    remove = getattr(task.result(), "remove", None)
    if remove is not None:
        remove()


def _stopped_error(reason: str, seconds: float, cancel: Cancel) -> errors.OpenEOError:
    if reason == "memory":
        return errors.ProcessGraphComplexity(
            f"The request was stopped: its computation held {cancel.held / 1e6:,.0f} MB of "
            f"intermediate results, more than the {(cancel.memory_limit or 0) / 1e6:,.0f} MB "
            "a synchronous request may (option max-memory, setting TERRACUBE_SYNC_MAX_MEMORY; "
            "see GET /processing_parameters). Run it as a batch job (POST /jobs, or "
            "connection.create_job(...) with the client), or make it smaller: a smaller "
            "extent, fewer dates or bands, a coarser resolution.")
    if reason == "time":
        return errors.ProcessGraphComplexity(
            f"The request was stopped after {seconds:g} s: synchronous requests may compute "
            "for at most that long (option max-seconds, setting TERRACUBE_SYNC_MAX_SECONDS; "
            "see GET /processing_parameters). Run it as a batch job (POST /jobs, or "
            "connection.create_job(...) with the client), or make it smaller: a smaller "
            "extent, fewer dates or bands, a coarser resolution.")
    # Nobody reads this answer: the client went away.
    return errors.RequestTimeout("The request was stopped: the client disconnected.")


def _result_scratch(request: Request, settings: Any) -> ResultScratch:
    """Where this server process writes synchronous results (one RAM budget for all)."""
    state = request.app.state
    scratch = getattr(state, "result_scratch", None)
    if scratch is None:
        scratch = state.result_scratch = ResultScratch.from_settings(settings)
    return scratch


def _sync_thread_limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter = getattr(state, "sync_thread_limiter", None)
    if limiter is None:
        limiter = state.sync_thread_limiter = anyio.CapacityLimiter(_SYNC_THREADS)
    return limiter


def _account(budgets: Any, sync_logs: Any, user_id: str, request_id: str, log: SyncLog,
             cpu: float, costs: float) -> None:
    budgets.record(user_id, "sync", request_id, cpu, costs)
    sync_logs.save(request_id, user_id, log)


@router.get("/logs/{request_id}", include_in_schema=False)
def sync_request_logs(request_id: str, user: CurrentUser,
                      sync_logs: SyncLogsDep) -> dict[str, Any]:
    """The log of a synchronous request (the `monitor` link of its response); no parameters."""
    return sync_logs.document(request_id, user.user_id)


def _sync_limiter(request: Request, limit: int) -> ConcurrencyLimiter:
    state = request.app.state
    limiter = getattr(state, "sync_limiter", None)
    if limiter is None:
        limiter = state.sync_limiter = ConcurrencyLimiter(limit)
    return limiter


@router.post("/validation", operation_id="validate-custom-process",
             openapi_extra={"requestBody": {"required": True, **_PROCESS_BODY}})
async def validate_custom_process(request: Request, user: OptionalUser, body: JsonObjectBody,
                                  settings: SettingsDep, catalog: CatalogDep,
                                  registry: RegistryDep) -> dict[str, Any]:
    """Check a process without running it; problems are reported with status 200."""
    def validate() -> list[errors.OpenEOError]:
        services = build_services(settings, catalog, registry, user)
        try:
            return validate_process(body, services)
        except errors.OpenEOError as exc:
            return [exc]

    problems = await run_in_threadpool(validate)
    return {"errors": [problem.to_json() for problem in problems]}


_EXPLAIN_SCHEMA = {
    "type": "object", "required": ["valid", "nodes", "outputs", "errors"],
    "properties": {
        "valid": {"type": "boolean"},
        "nodes": {"type": "array", "items": {"type": "object"}},
        "loads": {"type": "array", "items": {"type": "object"}},
        "outputs": {"type": "array", "items": {"type": "object"}},
        "bytes_to_read": {"type": "integer"},
        "pixels_to_read": {"type": "integer"},
        "output_bytes": {"type": "integer"},
        "estimable": {"type": "boolean"},
        "errors": {"type": "array", "items": {"type": "object"}}}}
_EXPLAIN_RESPONSE: dict[int | str, dict[str, Any]] = {200: {
    "description": "The dry run: every node's dimensions (label count, first and last label), "
                   "CRS, resolution, shape, dtype and bytes to hold, the loads' bytes to read, "
                   "the outputs' sizes, and the errors found.",
    "content": {"application/json": {"schema": _EXPLAIN_SCHEMA}}}}


@router.post("/explain", operation_id="explain-process", tags=["terracube extensions"],
             openapi_extra={"requestBody": _RESULT_BODY}, responses=_EXPLAIN_RESPONSE)
async def explain_custom_process(user: OptionalUser, body: JsonObjectBody,
                                 settings: SettingsDep, catalog: CatalogDep,
                                 registry: RegistryDep, jobs: JobsDep,
                                 folders: FoldersDep) -> dict[str, Any]:
    """A dry run (terracube extension): what every node of the process would hold, from
    metadata only — no pixel is read. The body is that of POST /result (or of /validation).
    Errors of the process are listed in `errors` (status 200), as /validation lists them."""
    def explain() -> dict[str, Any]:
        owned = UserJobResults(jobs, folders, user.user_id) if user is not None else None
        services = build_services(settings, catalog, registry, user, job_results=owned)
        return explain_process(body, services).to_json()

    return await run_in_threadpool(explain)
