"""Batch jobs (openEO API 1.2, "Batch Jobs"): create, list, change, start, cancel, results, logs.

The API only records what the user asks for; `terracube worker` processes run the jobs
(terracube.jobs.worker). Jobs belong to their owner: another user's job answers JobNotFound
like a job that does not exist. Result files are downloaded through signed, expiring links
that need no Authorization header (the spec's "signed URLs"). The rules (bodies, documents,
statuses, retention) are in jobs/requests.py and jobs/documents.py.
"""

from __future__ import annotations

from functools import partial
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from terracube.api.deps import (
    ActiveUser,
    BudgetsDep,
    CatalogDep,
    FoldersDep,
    JobsDep,
    JsonObjectBody,
    RegistryDep,
    SettingsDep,
    SignerDep,
    api_url,
    int_query,
)
from terracube.api.responses import FileDownload
from terracube.api.routes.services import result_xyz_links
from terracube.engine.udf_envs import prepare_graph
from terracube.errors import BadRequest, NotFound
from terracube.jobs import documents as docs
from terracube.jobs.logs import LEVELS
from terracube.jobs.requests import (
    checked_job_id,
    ignored_options,
    job_fields,
    job_options,
    log_query,
    processing_parameters,
    wants_partial,
)
from terracube.jobs.results_access import UserJobResults
from terracube.jobs.store import ACTIVE
from terracube.processing import costs as billing
from terracube.processing.estimate import estimate_if_possible
from terracube.processing.estimate import estimate_job as estimate
from terracube.processing.services import build_services

router = APIRouter(tags=["Batch Jobs"])

_JOB_PROPERTIES = {"title": {"type": "string", "nullable": True},
                   "description": {"type": "string", "nullable": True},
                   "process": {"type": "object"},
                   "plan": {"type": "string", "nullable": True},
                   "budget": {"type": "number", "nullable": True},
                   "log_level": {"type": "string", "enum": list(LEVELS)}}
_CREATE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["process"], "properties": _JOB_PROPERTIES}}}}
_PATCH_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": _JOB_PROPERTIES}}}}


def _url(request: Request, *, signed: bool = False) -> docs.ApiUrl:
    """URLs of API paths; `signed`: for documents with signed links, which are never built
    from a Host header a client could forge (api/deps.py root_url)."""
    return partial(api_url, request, trusted=signed)


@router.get("/processing_parameters", operation_id="list-processing-parameters")
def list_processing_parameters(settings: SettingsDep) -> dict[str, Any]:
    """The options of batch jobs and synchronous requests (processing-parameters extension):
    name, default, schema and meaning of each, the server's limits among them."""
    return processing_parameters(settings)


@router.get("/jobs", operation_id="list-jobs")
def list_jobs(request: Request, user: ActiveUser, jobs: JobsDep) -> dict[str, Any]:
    """The user's batch jobs, newest first; `limit` pages them (a `next` link follows)."""
    limit = int_query(request, "limit", minimum=1)
    try:
        page, cursor = jobs.list(user.user_id, limit=limit,
                                 after=request.query_params.get("page") or None)
    except ValueError as exc:
        raise BadRequest(f"The query parameter 'page' is invalid: {exc}.") from None
    return docs.jobs_list(page, cursor, limit, _url(request))


@router.post("/jobs", operation_id="create-job", status_code=201, response_class=Response,
             openapi_extra={"requestBody": _CREATE_BODY},
             responses={201: {"description": "Created; see the Location and "
                                             "OpenEO-Identifier headers."}})
def create_job(request: Request, user: ActiveUser, body: JsonObjectBody,
               jobs: JobsDep, settings: SettingsDep) -> Response:
    """Store a batch job (status `created`); POST /jobs/{job_id}/results starts it."""
    fields = job_fields(body, creating=True)
    fields["plan"] = billing.checked_plan(fields.get("plan"), settings)
    job = jobs.create(user.user_id, **fields)
    jobs.add_log(job.job_id, "debug", "Created.", min_level=job.log_level)
    ignored = ignored_options(job_options(body))
    if ignored:
        jobs.add_log(job.job_id, "warning", f"The job option(s) {', '.join(ignored)} have no "
                     "effect on this back-end (GET /processing_parameters lists the options).",
                     min_level=job.log_level)
    return Response(status_code=201, headers={
        "Location": api_url(request, f"/jobs/{job.job_id}"), "OpenEO-Identifier": job.job_id})


@router.get("/jobs/{job_id}", operation_id="describe-job")
def describe_job(request: Request, job_id: str, user: ActiveUser,
                 jobs: JobsDep, settings: SettingsDep) -> dict[str, Any]:
    job = jobs.get(checked_job_id(job_id), user.user_id)
    return docs.job_document(job, _url(request), costs=billing.costs_of(job.usage, settings),
                             default_plan=billing.default_plan(settings))


@router.patch("/jobs/{job_id}", operation_id="update-job", status_code=204,
              response_class=Response, openapi_extra={"requestBody": _PATCH_BODY})
def update_job(job_id: str, user: ActiveUser, body: JsonObjectBody, jobs: JobsDep,
               settings: SettingsDep) -> Response:
    """Change a job that is not queued or running (JobLocked otherwise); `{}` changes nothing."""
    fields = job_fields(body, creating=False)
    if "plan" in fields:
        fields["plan"] = billing.checked_plan(fields["plan"], settings)
    jobs.update(checked_job_id(job_id), user.user_id, fields)
    return Response(status_code=204)


@router.delete("/jobs/{job_id}", operation_id="delete-job", status_code=204,
               response_class=Response)
def delete_job(job_id: str, user: ActiveUser, jobs: JobsDep, folders: FoldersDep) -> Response:
    """Delete the job, its logs and its result files; a running computation is stopped."""
    job = jobs.delete(checked_job_id(job_id), user.user_id)
    folders.remove_job(job.job_id)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/results", operation_id="start-job", status_code=202,
             response_class=Response)
def start_job(job_id: str, user: ActiveUser, jobs: JobsDep, folders: FoldersDep,
              settings: SettingsDep, catalog: CatalogDep, registry: RegistryDep,
              budgets: BudgetsDep) -> Response:
    """Queue the job (a finished, failed or canceled one starts again: its results go);
    no effect on a queued or running job; 429 when the user has too many jobs queued;
    PaymentRequired when the user's compute allowance is used up or the job's estimated
    costs exceed its budget."""
    job_id = checked_job_id(job_id)
    job = jobs.get(job_id, user.user_id)
    if job.status not in ACTIVE:
        budgets.check(user.user_id)
        prepare_graph(job.process, settings)  # packages its UDFs declare, before it is queued
        if job.budget is not None and settings.billing_rate > 0:
            guess = estimate_if_possible(job.process, build_services(
                settings, catalog, registry, user,
                job_results=UserJobResults(jobs, folders, user.user_id)))
            if guess is not None:  # a UDF, say: its usage is stopped at the budget instead
                billing.check_budget(job.budget,
                                     billing.estimate_billing(guess, settings)["costs"],
                                     f"job {job_id}")
    discarded = jobs.start(job_id, user.user_id, settings.max_queued_jobs_per_user)
    if discarded != "":
        if discarded:
            folders.remove_run(job_id, discarded)
        jobs.add_log(job_id, "info", "Queued.")
    return Response(status_code=202)


@router.delete("/jobs/{job_id}/results", operation_id="stop-job", status_code=204,
               response_class=Response)
def stop_job(job_id: str, user: ActiveUser, jobs: JobsDep) -> Response:
    """Cancel a queued or running job; its worker kills the computation within a second."""
    job_id = checked_job_id(job_id)
    before = jobs.get(job_id, user.user_id)
    message = docs.cancel_message(before, jobs.cancel(job_id, user.user_id))
    if message:
        jobs.add_log(job_id, "info", message, code="JobCanceled")
    return Response(status_code=204)


@router.get("/jobs/{job_id}/results", operation_id="list-results")
def list_results(request: Request, job_id: str, user: ActiveUser, jobs: JobsDep,
                 signer: SignerDep, settings: SettingsDep) -> Response:
    """The results as a STAC Collection whose assets are signed download links and whose
    `item` links lead to one signed Item per file; one STAC Item with all files for a client
    that asks for application/geo+json (the API's content negotiation)."""
    job = jobs.get(checked_job_id(job_id), user.user_id)
    failed = docs.unavailable_results(jobs, job, wants_partial(request.query_params.get(
        "partial")))
    if failed is not None:
        return JSONResponse(failed, status_code=424)
    geojson = wants_geojson(request.headers.get("accept", ""))
    doc = docs.results_document(job, _url(request, signed=True), signer,
                                settings.job_retention_days, as_item=geojson)
    doc["links"] = [*doc.get("links", []), *result_xyz_links(request, job, signer)]
    # OpenEO-Costs here is what downloading the files once costs (the API): downloads are
    # never charged, so 0 (the job's processing costs are in GET /jobs/{job_id}).
    return JSONResponse(doc, media_type="application/geo+json" if geojson
                        else "application/json", headers={"OpenEO-Costs": "0"})


def wants_geojson(accept: str) -> bool:
    """Whether the Accept header prefers GeoJSON (the Item) over JSON (the Collection)."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[media.strip().lower()] = max(q, best.get(media.strip().lower(), 0.0))
    geo = best.get("application/geo+json", 0.0)
    return geo > 0 and geo >= best.get("application/json", 0.0)


@router.api_route("/jobs/{job_id}/results/assets/{asset}", methods=["GET", "HEAD"],
                  include_in_schema=False)
def download_asset(request: Request, job_id: str, asset: str, jobs: JobsDep,
                   folders: FoldersDep, signer: SignerDep) -> Response:
    """A result file through its signed link (no Authorization needed); Range requests work."""
    job = docs.signed_job(jobs, signer, job_id, asset, request.query_params.get("expires"),
                          request.query_params.get("signature"))
    info = docs.asset_info(job, asset)
    path = folders.asset_path(job.job_id, job.results_run or "", asset)
    if not path.is_file():
        raise NotFound(f"The result file '{asset}' is gone.")
    return FileDownload(path, media_type=info.get("type"), filename=asset,
                        content_disposition_type="attachment")


@router.get("/jobs/{job_id}/results/item.json", include_in_schema=False)
def signed_results_item(request: Request, job_id: str, jobs: JobsDep,
                        signer: SignerDep) -> Response:
    """The results as one Item through its signed link (no Authorization needed)."""
    job = docs.signed_job(jobs, signer, job_id, "", request.query_params.get("expires"),
                          request.query_params.get("signature"))
    self_href = api_url(request, f"/jobs/{job.job_id}/results/item.json", trusted=True)
    item = docs.signed_results_document(job, _url(request, signed=True), signer,
                                        int(request.query_params["expires"]),
                                        f"{self_href}?{request.url.query}")
    return JSONResponse(item, media_type="application/geo+json")


@router.get("/jobs/{job_id}/results/collection.json", include_in_schema=False)
def signed_results_collection(request: Request, job_id: str, jobs: JobsDep,
                              signer: SignerDep) -> Response:
    """The results Collection through its signed `canonical` link (no Authorization
    needed): what load_stac and other STAC clients read."""
    job = docs.signed_job(jobs, signer, job_id, docs.COLLECTION_SCOPE,
                          request.query_params.get("expires"),
                          request.query_params.get("signature"))
    self_href = api_url(request, f"/jobs/{job.job_id}/results/collection.json", trusted=True)
    doc = docs.signed_results_collection(job, _url(request, signed=True), signer,
                                         int(request.query_params["expires"]),
                                         f"{self_href}?{request.url.query}")
    return JSONResponse(doc)


@router.get("/jobs/{job_id}/results/items/{item_id}", include_in_schema=False)
def signed_file_item(request: Request, job_id: str, item_id: str, jobs: JobsDep,
                     signer: SignerDep) -> Response:
    """The Item of one result file through its signed link (no Authorization needed)."""
    job = docs.signed_job(jobs, signer, job_id, docs.ITEM_SCOPE + item_id,
                          request.query_params.get("expires"),
                          request.query_params.get("signature"))
    self_href = api_url(request, f"/jobs/{job.job_id}/results/items/{quote(item_id, safe='')}",
                        trusted=True)
    item = docs.signed_file_item(job, item_id, _url(request, signed=True), signer,
                                 int(request.query_params["expires"]),
                                 f"{self_href}?{request.url.query}")
    return JSONResponse(item, media_type="application/geo+json")


@router.get("/jobs/{job_id}/logs", operation_id="debug-job")
def debug_job(request: Request, job_id: str, user: ActiveUser, jobs: JobsDep) -> dict[str, Any]:
    """Log entries after `offset` (the last id received), at or above `level`."""
    job = jobs.get(checked_job_id(job_id), user.user_id)
    query = log_query(request.query_params.get("level"), request.query_params.get("offset"))
    limit = int_query(request, "limit", minimum=1)
    return docs.job_logs(jobs, job, query, limit, _url(request))


@router.get("/jobs/{job_id}/estimate", operation_id="estimate-job")
async def estimate_job(job_id: str, user: ActiveUser, jobs: JobsDep, folders: FoldersDep,
                       settings: SettingsDep, catalog: CatalogDep,
                       registry: RegistryDep) -> dict[str, Any]:
    """Data to read, output size and a rough duration, from a dry run of the graph (no pixel
    is read); EstimateComplexity when the duration cannot be known (a UDF, say)."""
    job = await run_in_threadpool(jobs.get, checked_job_id(job_id), user.user_id)

    def run() -> dict[str, Any]:
        result = estimate(job.process, build_services(
            settings, catalog, registry, user,
            job_results=UserJobResults(jobs, folders, user.user_id)))
        return {**result, **billing.estimate_billing(result, settings)}

    return await run_in_threadpool(run)
