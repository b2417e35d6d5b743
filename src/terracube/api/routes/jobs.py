"""Batch jobs (openEO API 1.2, "Batch Jobs"): create, list, change, start, cancel, results, logs.

The API only records what the user asks for; `terracube worker` processes run the jobs
(terracube.jobs.worker). Jobs belong to their owner: another user's job answers JobNotFound
like a job that does not exist. Result files are downloaded through signed, expiring links
that need no Authorization header (the spec's "signed URLs").
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from terracube import errors
from terracube.api.deps import (
    CatalogDep,
    JsonObjectBody,
    RegistryDep,
    SettingsDep,
    api_url,
    int_query,
    link,
)
from terracube.api.errors import BadRequest
from terracube.api.responses import FileDownload
from terracube.api.user_data import ActiveUser
from terracube.engine import graph as graphs
from terracube.jobs import store as st
from terracube.jobs.files import JobFolders
from terracube.jobs.logs import LEVELS, check_level, rfc3339, stricter
from terracube.jobs.results_stac import results_item, stac_asset
from terracube.jobs.signing import UrlSigner
from terracube.jobs.store import Job, JobStore

router = APIRouter(tags=["Batch Jobs"])

_JOB_ID = re.compile(r"^[\w\-.~]+$")
_EDITABLE = ("title", "description", "process", "plan", "budget", "log_level")
_READ_ONLY = ("id", "status", "progress", "created", "updated", "costs", "usage", "links")


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_folders(request: Request) -> JobFolders:
    return request.app.state.job_folders


def get_signer(request: Request) -> UrlSigner:
    return request.app.state.url_signer


JobsDep = Annotated[JobStore, Depends(get_jobs)]
FoldersDep = Annotated[JobFolders, Depends(get_folders)]
SignerDep = Annotated[UrlSigner, Depends(get_signer)]

_CREATE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["process"],
    "properties": {"title": {"type": "string", "nullable": True},
                   "description": {"type": "string", "nullable": True},
                   "process": {"type": "object"},
                   "plan": {"type": "string", "nullable": True},
                   "budget": {"type": "number", "nullable": True},
                   "log_level": {"type": "string", "enum": list(LEVELS)}}}}}}
_PATCH_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object",
    "properties": _CREATE_BODY["content"]["application/json"]["schema"]["properties"]}}}}


# --- request checks ---------------------------------------------------------------------------
def _checked_job_id(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise errors.JobNotFound(f"The batch job '{job_id}' does not exist.")
    return job_id


def _job_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """The job properties of a POST/PATCH body, checked; BadRequest etc. otherwise."""
    fields: dict[str, Any] = {}
    if creating and "process" not in body:
        raise errors.ProcessGraphMissing(
            "The request body needs 'process': {\"process_graph\": {...}}.")
    if not creating:
        for name in body:
            if name in _READ_ONLY or name not in _EDITABLE:
                raise errors.PropertyNotEditable(
                    f"The property '{name}' cannot be changed; editable are "
                    f"{', '.join(_EDITABLE)}.")
    if "process" in body:
        process = body["process"]
        if not isinstance(process, dict) or not isinstance(process.get("process_graph"), dict):
            raise errors.ProcessGraphMissing(
                "'process' must be an object with a 'process_graph'.")
        graphs.validate_structure(graphs.unwrap(process))
        fields["process"] = process
    for name in ("title", "description", "plan"):
        if name in body:
            if body[name] is not None and not isinstance(body[name], str):
                raise BadRequest(f"'{name}' must be a string or null.")
            fields[name] = body[name]
    if "budget" in body:
        budget = body["budget"]
        if budget is not None and (isinstance(budget, bool)
                                   or not isinstance(budget, (int, float)) or budget < 0):
            raise BadRequest("'budget' must be a number >= 0 or null.")
        fields["budget"] = None if budget is None else float(budget)
    if "log_level" in body:
        try:
            fields["log_level"] = check_level(body["log_level"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    return fields


# --- job documents -----------------------------------------------------------------------------
def job_summary(job: Job) -> dict[str, Any]:
    """A job in GET /jobs: the scalar properties only (the spec recommends leaving out
    `process` and other objects there)."""
    out: dict[str, Any] = {"id": job.job_id, "title": job.title,
                           "description": job.description, "status": job.status,
                           "progress": _progress(job), "created": rfc3339(job.created),
                           "updated": rfc3339(job.updated), "plan": job.plan,
                           "budget": job.budget, "log_level": job.log_level}
    # Unset properties are left out rather than null: the same for clients, and validators
    # in OpenAPI 3.1 mode (the official suite's) do not know the 3.0 `nullable`.
    return {key: value for key, value in out.items() if value is not None}


def _progress(job: Job) -> float:
    # "Submitted and queued jobs only allow the value 0, finished jobs only allow 100."
    if job.status in (st.CREATED, st.QUEUED):
        return 0
    if job.status == st.FINISHED:
        return 100
    return round(job.progress or 0.0, 1)


def job_document(request: Request, job: Job) -> dict[str, Any]:
    out = job_summary(job)
    out["process"] = job.process
    if job.usage:
        out["usage"] = job.usage
    links = [link(request, "monitor", f"/jobs/{job.job_id}/logs", title="Batch job logs")]
    if job.asset_count:
        links.append(link(request, "result", f"/jobs/{job.job_id}/results",
                          title="Batch job results"))
    out["links"] = links
    return out


# --- the routes -----------------------------------------------------------------------------------
@router.get("/jobs", operation_id="list-jobs")
def list_jobs(request: Request, user: ActiveUser, jobs: JobsDep) -> dict[str, Any]:
    """The user's batch jobs, newest first; `limit` pages them (a `next` link follows)."""
    limit = int_query(request, "limit", minimum=1)
    after = request.query_params.get("page") or None
    try:
        page, cursor = jobs.list(user.user_id, limit=limit, after=after)
    except ValueError as exc:
        raise BadRequest(f"The query parameter 'page' is invalid: {exc}.") from None
    links = []
    if cursor is not None:
        links.append({"rel": "next", "type": "application/json",
                      "href": api_url(request, "/jobs") + f"?limit={limit}&page={cursor}"})
    return {"jobs": [job_summary(job) for job in page], "links": links}


@router.post("/jobs", operation_id="create-job", status_code=201, response_class=Response,
             openapi_extra={"requestBody": _CREATE_BODY},
             responses={201: {"description": "Created; see the Location and "
                                             "OpenEO-Identifier headers."}})
def create_job(request: Request, user: ActiveUser, body: JsonObjectBody,
               jobs: JobsDep) -> Response:
    """Store a batch job (status `created`); POST /jobs/{job_id}/results starts it."""
    fields = _job_fields(body, creating=True)
    job = jobs.create(user.user_id, **fields)
    jobs.add_log(job.job_id, "debug", "Created.", min_level=job.log_level)
    return Response(status_code=201, headers={
        "Location": api_url(request, f"/jobs/{job.job_id}"), "OpenEO-Identifier": job.job_id})


@router.get("/jobs/{job_id}", operation_id="describe-job")
def describe_job(request: Request, job_id: str, user: ActiveUser,
                 jobs: JobsDep) -> dict[str, Any]:
    return job_document(request, jobs.get(_checked_job_id(job_id), user.user_id))


@router.patch("/jobs/{job_id}", operation_id="update-job", status_code=204,
              response_class=Response, openapi_extra={"requestBody": _PATCH_BODY})
def update_job(job_id: str, user: ActiveUser, body: JsonObjectBody, jobs: JobsDep) -> Response:
    """Change a job that is not queued or running (JobLocked otherwise); `{}` changes nothing."""
    fields = _job_fields(body, creating=False)
    jobs.update(_checked_job_id(job_id), user.user_id, fields)
    return Response(status_code=204)


@router.delete("/jobs/{job_id}", operation_id="delete-job", status_code=204,
               response_class=Response)
def delete_job(job_id: str, user: ActiveUser, jobs: JobsDep, folders: FoldersDep) -> Response:
    """Delete the job, its logs and its result files; a running computation is stopped."""
    job = jobs.delete(_checked_job_id(job_id), user.user_id)
    folders.remove_job(job.job_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/results", operation_id="start-job", status_code=202,
             response_class=Response)
def start_job(job_id: str, user: ActiveUser, jobs: JobsDep, folders: FoldersDep) -> Response:
    """Queue the job (a finished, failed or canceled one starts again: its results go);
    no effect on a queued or running job."""
    job_id = _checked_job_id(job_id)
    discarded = jobs.start(job_id, user.user_id)
    if discarded != "":
        if discarded:
            folders.remove_run(job_id, discarded)
        jobs.add_log(job_id, "info", "Queued.")
    return Response(status_code=202)


@router.delete("/jobs/{job_id}/results", operation_id="stop-job", status_code=204,
               response_class=Response)
def stop_job(job_id: str, user: ActiveUser, jobs: JobsDep) -> Response:
    """Cancel a queued or running job; its worker kills the computation within a second."""
    job_id = _checked_job_id(job_id)
    before = jobs.get(job_id, user.user_id)
    after = jobs.cancel(job_id, user.user_id)
    if before.status in st.ACTIVE and after.status != before.status:
        if after.status == st.CANCELED:
            text = (f"Canceled by the user at {after.progress:.0f} %; the {after.asset_count} "
                    "result file(s) written until then stay available "
                    "(GET /jobs/{job_id}/results?partial=true).")
        else:
            text = f"Canceled by the user while {before.status}; no results were kept."
        jobs.add_log(job_id, "info", text, code="JobCanceled")
    return Response(status_code=204)


@router.get("/jobs/{job_id}/results", operation_id="list-results")
def list_results(request: Request, job_id: str, user: ActiveUser, jobs: JobsDep,
                 signer: SignerDep, settings: SettingsDep) -> Response:
    """The results as a STAC Item whose assets are signed download links."""
    job = jobs.get(_checked_job_id(job_id), user.user_id)
    raw = request.query_params.get("partial")
    partial = raw is not None and raw.lower() in ("", "true", "1")  # allowEmptyValue: ?partial
    # Partial results exist only once a run started: running, canceled or failed jobs.
    partial = partial and job.status in (st.RUNNING, st.CANCELED, st.ERROR)
    if job.status != st.FINISHED and not partial:
        if job.status == st.ERROR:
            entry = jobs.last_error(job.job_id)
            body = log_entry(entry) if entry else {
                "id": "0", "level": "error", "message": "The batch job failed."}
            return JSONResponse(body, status_code=424)
        if job.status in st.ACTIVE:
            raise errors.JobNotFinished(
                f"The batch job '{job.job_id}' is {job.status} ({_progress(job):.0f} %); the "
                "results are available once it is finished (or ask for partial=true).")
        raise errors.JobNotStarted(
            f"The batch job '{job.job_id}' is {job.status}: start it with POST "
            f"/jobs/{job.job_id}/results." + (" Partial results: ?partial=true."
                                               if job.asset_count else ""))
    expires = signer.expiry()
    assets = {}
    for info in job.assets or []:
        href = signed_asset_url(request, signer, job, info["name"], expires)
        assets[info["name"]] = stac_asset(info, href)
    links = [
        link(request, "self", f"/jobs/{job.job_id}/results", type="application/geo+json"),
        {"rel": "canonical", "type": "application/geo+json",
         "href": signed_item_url(request, signer, job, expires)},
        link(request, "related", f"/jobs/{job.job_id}", title="The batch job"),
    ]
    from datetime import UTC, datetime, timedelta

    available_until = datetime.fromtimestamp(expires, UTC)
    if settings.job_retention_days and job.ended is not None:
        kept = st.aware(job.ended) + timedelta(days=settings.job_retention_days)
        available_until = min(available_until, kept)
    item = results_item(job, assets, links, status=job.status, expires=available_until)
    return JSONResponse(item, media_type="application/geo+json" if _wants_geojson(request)
                        else "application/json", headers={"OpenEO-Costs": "0"})


def _wants_geojson(request: Request) -> bool:
    return "application/geo+json" in request.headers.get("accept", "")


def signed_asset_url(request: Request, signer: UrlSigner, job: Job, asset: str,
                     expires: int) -> str:
    run = job.results_run or ""
    signature = signer.sign(job.job_id, run, asset, expires)
    return (api_url(request, f"/jobs/{job.job_id}/results/assets/{asset}")
            + f"?expires={expires}&signature={signature}")


def signed_item_url(request: Request, signer: UrlSigner, job: Job, expires: int) -> str:
    run = job.results_run or ""
    signature = signer.sign(job.job_id, run, "", expires)
    return (api_url(request, f"/jobs/{job.job_id}/results/item.json")
            + f"?expires={expires}&signature={signature}")


def _signed_job(jobs: JobStore, signer: UrlSigner, job_id: str, asset: str,
                request: Request) -> Job:
    job = jobs.find(job_id) if _JOB_ID.match(job_id) else None
    run = job.results_run if job is not None and job.results_run else ""
    signer.check(job_id, run, asset, request.query_params.get("expires"),
                 request.query_params.get("signature"))
    if job is None or not job.results_run:
        raise errors.NotFound(f"The batch job '{job_id}' has no results (any more).")
    return job


@router.api_route("/jobs/{job_id}/results/assets/{asset}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def download_asset(request: Request, job_id: str, asset: str, jobs: JobsDep,
                   folders: FoldersDep, signer: SignerDep) -> Response:
    """A result file through its signed link (no Authorization needed); Range requests work."""
    job = _signed_job(jobs, signer, job_id, asset, request)
    info = next((a for a in job.assets or [] if a.get("name") == asset), None)
    if info is None:
        raise errors.NotFound(f"The batch job '{job_id}' has no result file '{asset}'.")
    path = folders.asset_path(job.job_id, job.results_run or "", asset)
    if not path.is_file():
        raise errors.NotFound(f"The result file '{asset}' is gone.")
    return FileDownload(path, media_type=info.get("type"), filename=asset,
                        content_disposition_type="attachment")


@router.get("/jobs/{job_id}/results/item.json", include_in_schema=False)
def signed_results_item(request: Request, job_id: str, jobs: JobsDep, signer: SignerDep,
                        settings: SettingsDep) -> Response:
    """The results document through its signed `canonical` link (no Authorization needed)."""
    job = _signed_job(jobs, signer, job_id, "", request)
    expires = int(request.query_params["expires"])
    assets = {info["name"]: stac_asset(info, signed_asset_url(request, signer, job,
                                                              info["name"], expires))
              for info in job.assets or []}
    from datetime import UTC, datetime

    item = results_item(job, assets, [{"rel": "self", "type": "application/geo+json",
                                       "href": str(request.url)}],
                        status=job.status, expires=datetime.fromtimestamp(expires, UTC))
    return JSONResponse(item, media_type="application/geo+json")


@router.get("/jobs/{job_id}/logs", operation_id="debug-job")
def debug_job(request: Request, job_id: str, user: ActiveUser, jobs: JobsDep) -> dict[str, Any]:
    """Log entries after `offset` (the last id received), at or above `level`."""
    job = jobs.get(_checked_job_id(job_id), user.user_id)
    level = request.query_params.get("level") or "debug"
    try:
        check_level(level, "level")
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    offset_text = request.query_params.get("offset") or None
    after = None
    if offset_text is not None:
        try:
            after = int(offset_text)
        except ValueError:
            raise BadRequest(f"'offset' must be the id of a log entry (a number), got "
                             f"{offset_text!r}.") from None
    limit = int_query(request, "limit", minimum=1)
    effective = stricter(job.log_level, level)
    entries = jobs.logs(job.job_id, after=after, min_level=effective,
                        limit=None if limit is None else limit + 1)
    links = []
    if limit is not None and len(entries) > limit:
        entries = entries[:limit]
        links.append({"rel": "next", "type": "application/json",
                      "href": api_url(request, f"/jobs/{job.job_id}/logs")
                      + f"?offset={entries[-1].id}&level={level}&limit={limit}"})
    return {"level": effective, "logs": [log_entry(e) for e in entries], "links": links}


def log_entry(entry: st.JobLog) -> dict[str, Any]:
    out: dict[str, Any] = {"id": str(entry.id), "level": entry.level, "message": entry.message,
                           "time": rfc3339(entry.time)}
    if entry.code:
        out["code"] = entry.code
    if entry.path:
        out["path"] = entry.path
    if entry.data is not None:
        out["data"] = entry.data
    if entry.usage:
        out["usage"] = entry.usage
    out["links"] = []
    return out


@router.get("/jobs/{job_id}/estimate", operation_id="estimate-job")
async def estimate_job(job_id: str, user: ActiveUser, jobs: JobsDep, settings: SettingsDep,
                       catalog: CatalogDep, registry: RegistryDep) -> dict[str, Any]:
    """Data to read, output size and a rough duration, from a dry run of the graph."""
    from terracube.processing.estimate import estimate_job as estimate
    from terracube.processing.services import build_services

    job = await run_in_threadpool(jobs.get, _checked_job_id(job_id), user.user_id)

    def run() -> dict[str, Any]:
        services = build_services(settings, catalog, registry, user)
        return estimate(job.process, services)

    return await run_in_threadpool(run)
