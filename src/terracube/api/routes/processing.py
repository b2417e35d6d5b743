"""Data processing: POST /result (synchronous results) and POST /validation."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from terracube import errors
from terracube.api.deps import (
    CatalogDep,
    CurrentUser,
    ExecutorDep,
    FoldersDep,
    JobsDep,
    JsonObjectBody,
    OptionalUser,
    RegistryDep,
    SettingsDep,
)
from terracube.api.responses import FileDownload
from terracube.api.user_limits import ConcurrencyLimiter
from terracube.jobs.files import results_folder_of
from terracube.jobs.requests import job_options
from terracube.processing.outputs import compute_result as run_and_compute
from terracube.processing.run import validate_process
from terracube.processing.services import build_services

router = APIRouter(tags=["Data Processing"])

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
                         settings: SettingsDep,
                         catalog: CatalogDep, registry: RegistryDep,
                         executor: ExecutorDep, jobs: JobsDep,
                         folders: FoldersDep) -> FileResponse:
    """Run a process graph now and send its result as the response body."""
    process = body.get("process")
    if not isinstance(process, dict) or not isinstance(process.get("process_graph"), dict):
        raise errors.ProcessGraphMissing(
            "The request body needs 'process': {\"process_graph\": {...}}.")
    job_options(body)  # checked like a job's (log_level), nested or flat
    services = build_services(settings, catalog, registry, user, executor=executor,
                              job_results=results_folder_of(jobs, folders, user.user_id))
    with _sync_limiter(request, settings.max_sync_requests_per_user).slot(user.user_id):
        # Computing blocks, so it runs in a worker thread, not on the event loop.
        result = await run_in_threadpool(run_and_compute, process, services)
    return TemporaryFileResponse(result.path, result.remove, media_type=result.media_type,
                                 filename=result.filename,
                                 headers={"OpenEO-Costs": "0",
                                          "OpenEO-Identifier": f"r-{uuid.uuid4().hex}"})


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
