"""Secondary web services (openEO API 1.2): GET /service_types, the user's services
(POST/GET/PATCH/DELETE /services, GET /services/{id}/logs) and the XYZ tiles they serve.

Services belong to their owner: another user's service answers ServiceNotFound like one that
does not exist, and so do its tiles. Map clients (Leaflet, QGIS, ipyleaflet behind the
client's `cube.preview()`) send no Authorization header, so a private service's `url` carries
an expiring signature in its path (`.../tiles/{expires}.{signature}/{z}/{x}/{y}.png`, signed
like result links, from the trusted origin: api/deps.py root_url); the plain tile path
answers its owner's token only. Configuration `public: true` opens the plain tile path to
everyone, while the service itself (graph, logs, changes) stays private. Tiles run the graph
as the owner. See docs/user-guide/maps.md.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from terracube import errors
from terracube.api.deps import (
    ActiveUser,
    CatalogDep,
    ExecutorDep,
    FoldersDep,
    JobsDep,
    JsonObjectBody,
    OptionalUser,
    RegistryDep,
    SettingsDep,
    SignerDep,
    UsersDep,
    api_url,
    get_job_folders,
    get_jobs,
    paginate,
)
from terracube.auth.users import User, UserStore
from terracube.jobs import documents as job_docs
from terracube.jobs.logs import levels_from
from terracube.jobs.requests import log_query
from terracube.jobs.results_access import UserJobResults
from terracube.jobs.signing import ResultLinkInvalid, UrlSigner
from terracube.processing.costs import default_plan
from terracube.processing.run import check_structure, validate_process
from terracube.processing.services import build_services
from terracube.services.previews import preview_config, preview_process
from terracube.services.render import (
    CONFIGURATION,
    CubeCache,
    TileCache,
    TileConfig,
    check_configuration,
    graph_hash,
    render_file_tile,
    render_tile,
)
from terracube.services.store import LOG_LEVELS, WRITABLE, ServiceStore
from terracube.settings import Settings

router = APIRouter(tags=["Secondary Services"])

SERVICE_TYPE = "XYZ"
TILE_PATH = "/services/xyz/{service_id}/tiles/{z}/{x}/{y}.png"
SIGNED_TILE_PATH = "/services/xyz/{service_id}/tiles/{token}/{z}/{x}/{y}.png"
# What a service's tile signature signs (UrlSigner's job/run/asset fields): no job has this run.
SERVICE_RUN, SERVICE_SCOPE = "service", "xyz-tiles"
RESULT_TILE_PATH = "/services/xyz/jobs/{job_id}/{asset}/tiles/{z}/{x}/{y}.png"
PREVIEW_PATH = "/services/xyz/collections/{collection_id}/tiles/{z}/{x}/{y}.png"
# Parameters a tile URL's query string may bind, besides any the graph declares itself.
PROCESS_PARAMETERS: list[dict[str, Any]] = []

_SERVICE_PROPERTIES = {"title": {"type": "string", "nullable": True},
                       "description": {"type": "string", "nullable": True},
                       "process": {"type": "object"},
                       "type": {"type": "string", "example": SERVICE_TYPE},
                       "enabled": {"type": "boolean"},
                       "configuration": {"type": "object"},
                       "plan": {"type": "string", "nullable": True},
                       "budget": {"type": "number", "nullable": True},
                       "log_level": {"type": "string", "enum": list(LOG_LEVELS)}}
_CREATE_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["type", "process"], "properties": _SERVICE_PROPERTIES}}}}
_PATCH_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "properties": _SERVICE_PROPERTIES}}}}


def get_service_store(request: Request) -> ServiceStore:
    state = request.app.state
    store = getattr(state, "service_store", None)
    if store is None:  # built on first use from the app's database
        store = state.service_store = ServiceStore(state.db)
    return store


def get_tile_cache(request: Request) -> TileCache:
    state = request.app.state
    cache = getattr(state, "tile_cache", None)
    if cache is None:
        cache = state.tile_cache = TileCache()
        state.tile_cubes = CubeCache()  # the lazy results tiles are cut from (small areas)
    return cache


def forget_service(request: Request, service_id: str) -> None:
    """Drop a changed or deleted service's tiles and lazy results."""
    get_tile_cache(request).forget(service_id)
    request.app.state.tile_cubes.forget(service_id)


ServicesDep = Annotated[ServiceStore, Depends(get_service_store)]
TileCacheDep = Annotated[TileCache, Depends(get_tile_cache)]


@router.get("/service_types", operation_id="list-service-types")
def list_service_types() -> dict[str, Any]:
    return {SERVICE_TYPE: {
        "title": "XYZ tiles",
        "description": "PNG map tiles in Web Mercator (WebMercatorQuad), z/x/y as OpenStreetMap, "
                       "rendered from the process graph tile by tile when a map asks for "
                       "them. Any query parameter of a tile URL binds the process parameter of "
                       "that name (JSON values, else text).",
        "configuration": CONFIGURATION,
        "process_parameters": PROCESS_PARAMETERS,
        "links": [{"rel": "about", "href": "https://wiki.openstreetmap.org/wiki/Slippy_map",
                   "title": "The XYZ (slippy map) tile scheme"}],
    }}


def service_url(request: Request, record: dict[str, Any], signer: UrlSigner) -> str:
    """The {z}/{x}/{y} tile URL template of a service: plain if it is public, else signed."""
    if (record.get("configuration") or {}).get("public") is True:
        return api_url(request, TILE_PATH.format(service_id=record["id"], z="{z}", x="{x}",
                                                 y="{y}"))
    expires = signer.expiry()
    signature = signer.sign(record["id"], SERVICE_RUN, SERVICE_SCOPE, expires)
    return api_url(request, SIGNED_TILE_PATH.format(
        service_id=record["id"], token=f"{expires}.{signature}", z="{z}", x="{x}", y="{y}"),
        trusted=True)


def service_document(request: Request, record: dict[str, Any],
                     signer: UrlSigner) -> dict[str, Any]:
    """A stored service as the API shows it: with its `url` (a {z}/{x}/{y} template)."""
    doc = {k: v for k, v in record.items() if k != "updated"}
    doc["url"] = service_url(request, record, signer)
    doc.setdefault("enabled", True)
    doc.setdefault("configuration", {})
    doc.setdefault("attributes", {})
    doc.setdefault("costs", 0)
    if doc.get("plan") is None:  # charged with the server's default plan (processing/costs.py)
        doc["plan"] = default_plan(request.app.state.settings)
    return doc


def checked_fields(body: dict[str, Any], request_fields: tuple[str, ...]) -> dict[str, Any]:
    """The writable fields of a POST or PATCH body, each checked."""
    out = {k: body[k] for k in request_fields if k in body}
    if "type" in out:
        if not isinstance(out["type"], str) or out["type"].upper() != SERVICE_TYPE:
            raise errors.ServiceUnsupported(
                f"Service type {out['type']!r} is not offered; GET /service_types lists "
                f"{SERVICE_TYPE}.")
        out["type"] = SERVICE_TYPE
    if "process" in out:
        process = out["process"]
        if not isinstance(process, dict) or not isinstance(process.get("process_graph"), dict):
            raise errors.ProcessGraphMissing(
                "The body needs 'process': {\"process_graph\": {...}}.")
        check_structure(process)
    if "configuration" in out:
        check_configuration(out["configuration"])
    if "enabled" in out and not isinstance(out["enabled"], bool):
        raise errors.BadRequest("'enabled' must be true or false.")
    for name in ("title", "description", "plan"):
        if out.get(name) is not None and not isinstance(out[name], str):
            raise errors.BadRequest(f"'{name}' must be a string or null.")
    if out.get("log_level") is not None and out["log_level"] not in LOG_LEVELS:
        raise errors.BadRequest(f"'log_level' must be one of {', '.join(LOG_LEVELS)}.")
    return out


def _validate(process: dict[str, Any], settings: Any, catalog: Any, registry: Any,
              user: Any) -> None:
    problems = validate_process(process, build_services(settings, catalog, registry, user))
    if problems:
        raise problems[0]


@router.post("/services", operation_id="create-service", status_code=201,
             openapi_extra={"requestBody": _CREATE_BODY}, response_class=Response)
async def create_service(request: Request, user: ActiveUser, body: JsonObjectBody,
                         services: ServicesDep, settings: SettingsDep, catalog: CatalogDep,
                         registry: RegistryDep) -> Response:
    """Store a service; its tiles are rendered when they are asked for."""
    for name in ("type", "process"):
        if name not in body:
            if name == "process":
                raise errors.ProcessGraphMissing("The body needs 'process'.")
            raise errors.ServiceUnsupported(
                f"The body needs 'type' (GET /service_types lists {SERVICE_TYPE}).")
    record = checked_fields(body, WRITABLE)
    record.setdefault("enabled", True)
    record.setdefault("configuration", {})
    await run_in_threadpool(_validate, record["process"], settings, catalog, registry, user)
    service_id = services.create(user.user_id, record)
    return Response(status_code=201, headers={
        "Location": api_url(request, f"/services/{service_id}"),
        "OpenEO-Identifier": service_id})


@router.get("/services", operation_id="list-services")
def list_services(request: Request, user: ActiveUser, services: ServicesDep,
                  signer: SignerDep) -> dict[str, Any]:
    docs = [service_document(request, record, signer)
            for record in services.all_of(user.user_id)]
    page, links = paginate(request, docs, "/services")
    return {"services": page, "links": links}


@router.get("/services/{service_id}", operation_id="describe-service")
def describe_service(request: Request, service_id: str, user: ActiveUser,
                     services: ServicesDep, signer: SignerDep) -> dict[str, Any]:
    """The service with what rendering its tiles used so far (`usage`: tiles rendered and
    the seconds spent; tiles served from the cache are free)."""
    doc = service_document(request, services.get(user.user_id, service_id), signer)
    doc["usage"] = services.usage(service_id)
    # The API's `budget` is nullable with default null, null meaning no limit; shown even
    # when unset, as billing clients read it here (decision record 0012).
    doc.setdefault("budget", None)
    return doc


@router.patch("/services/{service_id}", operation_id="update-service", status_code=204,
              openapi_extra={"requestBody": _PATCH_BODY}, response_class=Response)
async def update_service(request: Request, service_id: str, user: ActiveUser,
                         body: JsonObjectBody, services: ServicesDep, settings: SettingsDep,
                         catalog: CatalogDep, registry: RegistryDep) -> Response:
    services.get(user.user_id, service_id)  # ServiceNotFound before checking the body
    changes = checked_fields(body, WRITABLE)
    if "process" in changes:
        await run_in_threadpool(_validate, changes["process"], settings, catalog, registry,
                                user)
    services.update(user.user_id, service_id, changes)
    forget_service(request, service_id)
    return Response(status_code=204)


@router.delete("/services/{service_id}", operation_id="delete-service", status_code=204,
               response_class=Response)
def delete_service(request: Request, service_id: str, user: ActiveUser,
                   services: ServicesDep) -> Response:
    services.delete(user.user_id, service_id)
    forget_service(request, service_id)
    return Response(status_code=204)


@router.get("/services/{service_id}/logs", operation_id="debug-service")
def debug_service(request: Request, service_id: str, user: ActiveUser,
                  services: ServicesDep) -> dict[str, Any]:
    """What went wrong while rendering tiles (one entry per failed tile)."""
    query = log_query(request.query_params.get("level"), request.query_params.get("offset"))
    entries = services.logs(user.user_id, service_id, query.after, levels_from(query.level))
    page, links = paginate(request, entries, f"/services/{service_id}/logs")
    return {"logs": page, "level": query.level, "links": links}


def tile_parameters(request: Request) -> dict[str, Any]:
    """Process parameters from the tile URL's query string: JSON values, else text."""
    out: dict[str, Any] = {}
    for name, raw in request.query_params.items():
        try:
            out[name] = json.loads(raw)
        except json.JSONDecodeError:
            out[name] = raw
    return out


def check_tile_access(service_id: str, owner_id: str, record: dict[str, Any],
                      token: str | None, user: User | None, signer: UrlSigner) -> None:
    """Whether tiles of a service may be sent: public, a valid signed path, or its owner."""
    if token is not None:
        expires, _, signature = token.partition(".")
        try:
            signer.check(service_id, SERVICE_RUN, SERVICE_SCOPE, expires, signature)
        except errors.ResultLinkExpired:
            raise errors.ResultLinkExpired(
                f"This tile link has expired; GET /services/{service_id} gives a fresh `url`."
            ) from None
        except ResultLinkInvalid:
            raise ResultLinkInvalid(
                f"This tile link is not valid; GET /services/{service_id} gives its `url`."
            ) from None
        return
    if (record.get("configuration") or {}).get("public") is True:
        return
    if user is None:
        raise errors.AuthenticationRequired(
            f"The service '{service_id}' is private: fetch its tiles at the signed `url` of "
            f"GET /services/{service_id}, send its owner's Authorization header, or make it "
            "public with the configuration {\"public\": true}.")
    if user.user_id != owner_id:
        raise errors.ServiceNotFound(f"There is no service '{service_id}'.")


# Not openEO endpoints (the service's own URL), so left out of the capabilities' endpoints.
@router.get(TILE_PATH, operation_id="get-xyz-tile", response_class=Response,
            include_in_schema=False)
async def get_xyz_tile(request: Request, service_id: str, z: int, x: int, y: int,
                       services: ServicesDep, cache: TileCacheDep, users: UsersDep,
                       settings: SettingsDep, catalog: CatalogDep, registry: RegistryDep,
                       executor: ExecutorDep, signer: SignerDep,
                       user: OptionalUser) -> Response:
    """Tile z/x/y of a public service, or of the caller's own."""
    return await _xyz_tile(request, service_id, None, z, x, y, services, cache, users,
                           settings, catalog, registry, executor, signer, user)


async def _xyz_tile(request: Request, service_id: str, token: str | None, z: int, x: int,
                    y: int, services: ServiceStore, cache: TileCache, users: UserStore,
                    settings: Settings, catalog: Any, registry: Any, executor: Any,
                    signer: UrlSigner, user: User | None) -> Response:
    """Tile z/x/y of a service: from the cache, or rendered now (as the service's owner)."""
    owner_id, record = await run_in_threadpool(services.for_tiles, service_id)
    check_tile_access(service_id, owner_id, record, token, user, signer)
    if record.get("enabled") is False:
        raise errors.ServiceNotFound(f"The service '{service_id}' is disabled; enable it with "
                                     "PATCH /services/{service_id}.")
    parameters = tile_parameters(request)
    digest = graph_hash(record["process"], record.get("configuration"))
    query = json.dumps(parameters, sort_keys=True)
    key = (service_id, digest, z, x, y, query)
    tile = cache.get(key)
    if tile is None:
        def render() -> bytes:
            config = check_configuration(record.get("configuration"))
            owner = users.get(owner_id)
            # load_result(<job id>) reads the owner's finished jobs
            owner_jobs = UserJobResults(get_jobs(request), get_job_folders(request), owner_id)
            tile_services = build_services(settings, catalog, registry, owner,
                                           executor=executor, job_results=owner_jobs)
            return render_tile(record["process"], config, z, x, y, tile_services, parameters,
                               request.app.state.tile_cubes, (service_id, digest))

        started = time.perf_counter()
        try:
            tile = await run_in_threadpool(render)
        except errors.OpenEOError as exc:
            if exc.status != 404:
                level = "error" if exc.status >= 500 else "warning"
                await run_in_threadpool(services.log, service_id, level,
                                        f"tile {z}/{x}/{y}: {exc.message}", exc.code)
            raise
        await run_in_threadpool(services.add_usage, service_id,
                                time.perf_counter() - started)
        cache.put(key, tile)
    return Response(tile, media_type="image/png",
                    headers={"Cache-Control": "max-age=60"})


# --- collection previews --------------------------------------------------------------------
def collection_xyz_link(request: Request, collection_id: str) -> dict[str, str]:
    """The STAC web-map-links `xyz` link of a collection's preview layer."""
    href = api_url(request, PREVIEW_PATH.format(collection_id=collection_id, z="{z}", x="{x}",
                                                y="{y}"))
    return {"rel": "xyz", "href": href, "type": "image/png",
            "title": "Preview (median of the last month, stretched per tile)"}


@router.get(PREVIEW_PATH, operation_id="get-collection-preview-tile", response_class=Response,
            include_in_schema=False)
async def get_collection_preview_tile(collection_id: str, z: int, x: int, y: int,
                                      cache: TileCacheDep, settings: SettingsDep,
                                      catalog: CatalogDep, registry: RegistryDep,
                                      executor: ExecutorDep) -> Response:
    """Tile z/x/y of a collection's preview layer; public, as the collection's metadata."""
    stac = await run_in_threadpool(lambda: catalog.get(collection_id).stac())
    process, config = preview_process(stac), preview_config(stac)
    key = (f"collection:{collection_id}", graph_hash(process, repr(config)), z, x, y, "")
    tile = cache.get(key)
    if tile is None:
        preview_services = build_services(settings, catalog, registry, None, executor=executor)
        tile = await run_in_threadpool(render_tile, process, config, z, x, y, preview_services)
        cache.put(key, tile)
    return Response(tile, media_type="image/png", headers={"Cache-Control": "max-age=600"})


# Registered after the collection previews' route, whose path it would also match.
@router.get(SIGNED_TILE_PATH, operation_id="get-signed-xyz-tile", response_class=Response,
            include_in_schema=False)
async def get_signed_xyz_tile(request: Request, service_id: str, token: str, z: int, x: int,
                              y: int, services: ServicesDep, cache: TileCacheDep,
                              users: UsersDep, settings: SettingsDep, catalog: CatalogDep,
                              registry: RegistryDep, executor: ExecutorDep,
                              signer: SignerDep) -> Response:
    """Tile z/x/y of a service through the signed `url` it lists (no Authorization needed)."""
    return await _xyz_tile(request, service_id, token, z, x, y, services, cache, users,
                           settings, catalog, registry, executor, signer, None)


# --- job results ------------------------------------------------------------------------------
RESULT_TILE_SCOPE = "xyz:"  # signed as the pseudo-asset "xyz:<asset>": no file has that name


def result_xyz_links(request: Request, job: Any, signer: Any) -> list[dict[str, str]]:
    """`rel: xyz` links (signed, expiring like the asset links) of a finished job's GeoTIFF
    results, one per file."""
    expires = signer.expiry()
    links = []
    for info in job.assets or []:
        name = info.get("name", "")
        if not str(info.get("type", "")).startswith("image/tiff"):
            continue
        signature = signer.sign(job.job_id, job.results_run or "", RESULT_TILE_SCOPE + name,
                                expires)
        href = api_url(request, RESULT_TILE_PATH.format(
            job_id=job.job_id, asset=name, z="{z}", x="{x}", y="{y}"), trusted=True)
        links.append({"rel": "xyz", "href": f"{href}?expires={expires}&signature={signature}",
                      "type": "image/png", "title": f"Map of {name} (2-98 % stretch of the file)"})
    return links


@router.get(RESULT_TILE_PATH, operation_id="get-result-tile", response_class=Response,
            include_in_schema=False)
async def get_result_tile(request: Request, job_id: str, asset: str, z: int, x: int, y: int,
                          jobs: JobsDep, folders: FoldersDep, signer: SignerDep) -> Response:
    """Tile z/x/y of a GeoTIFF result of a batch job, through its signed link."""
    job = job_docs.signed_job(jobs, signer, job_id, RESULT_TILE_SCOPE + asset,
                              request.query_params.get("expires"),
                              request.query_params.get("signature"))
    job_docs.asset_info(job, asset)
    path = folders.asset_path(job.job_id, job.results_run or "", asset)
    if not path.is_file():
        raise errors.NotFound(f"The result file '{asset}' is gone.")
    tile = await run_in_threadpool(render_file_tile, path, TileConfig(), z, x, y)
    return Response(tile, media_type="image/png", headers={"Cache-Control": "max-age=600"})
