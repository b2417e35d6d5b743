"""load_stac: a cube from a STAC item, a static STAC collection/catalog or a STAC API collection;
load_result: a cube from the results of a batch job (by id, or by the URL of its results)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from terracube import errors
from terracube.engine.evaluate import ProcessContext, Services
from terracube.engine.ports import CollectionSource
from terracube.engine.processes.io import (
    _property_check,
    load_collection,
    load_request,
    masked_to_polygons,
)
from terracube.engine.registry import process


@process("load_stac")
def load_stac(url: str, spatial_extent: Any = None, temporal_extent: Any = None,
              bands: list[str] | None = None, properties: dict | None = None, *,
              ctx: ProcessContext) -> Any:
    if not isinstance(url, str) or urlparse(url).scheme not in ("http", "https"):
        # Paths on the server's disk are not for users to read; an administrator makes such
        # data a collection with `terracube collections add`.
        raise errors.ProcessParameterInvalid(
            f"url must be an http(s) URL of a STAC item, collection or catalog, or of a STAC "
            f"API collection; got {url!r}. Files on the server are offered as collections "
            "(load_collection).", argument="url")
    own_collection = _own_collection(url, ctx)
    if own_collection is not None:
        # GET /collections/{id} of this server is a STAC collection too (what users copy
        # into load_stac, e.g. the Cubes & Clouds MOOC); its items are served by no STAC
        # API, so it is loaded as load_collection loads it.
        return load_collection(own_collection, spatial_extent, temporal_extent, bands,
                               properties, ctx=ctx)
    own_job = _own_results_job(url, ctx)
    if own_job is not None:
        # The unsigned results URL of one of the user's jobs on this server (CDSE reads it
        # as the user's own job too); a process cannot send the user's token to it.
        request = load_request(spatial_extent, temporal_extent, bands, properties)
        return masked_to_polygons(_job_results(own_job, request, ctx, argument="url",
                                               check_property=_property_check),
                                  spatial_extent)
    reader = ctx.services.stac
    if reader is None:
        raise errors.ProcessUnsupported("load_stac needs a STAC reader, which this evaluation "
                                        "was not given.")
    request = load_request(spatial_extent, temporal_extent, bands, properties)
    try:
        source = reader.open(url)
    except ValueError as exc:  # the document at the URL is not STAC; the message says why
        raise errors.ProcessParameterInvalid(str(exc), argument="url") from None
    return masked_to_polygons(source.load(request, check_property=_property_check),
                              spatial_extent)


# A job id as load_result's definition allows it (parameter `id`, schema "ID").
_JOB_ID = re.compile(r"^[\w\-.~]+$")
# The path of a job's results in this API (GET /jobs/{job_id}/results), under any root path.
_RESULTS_PATH = re.compile(r"/jobs/([\w\-.~]+)/results/?$")
# The path of a collection in this API (GET /collections/{collection_id}).
_COLLECTION_PATH = re.compile(r"/collections/([\w\-.~:]+)/?$")


@process("load_result")
def load_result(id: str, spatial_extent: Any = None, temporal_extent: Any = None,
                bands: list[str] | None = None, *, ctx: ProcessContext) -> Any:
    """The results of a finished batch job as a cube. By job id: one of the user's own jobs
    (`Services.job_results`, the lookup load_ml_model uses; another user's job is not found).
    By URL: the STAC document of a job's results, read as load_stac reads it — the signed
    `canonical` link of our own results (what CDSE users pass on) or another back-end's; the
    unsigned GET /jobs/{id}/results URL of this server means the user's own job of that id."""
    if not isinstance(id, str) or not id:
        raise errors.ProcessParameterInvalid(
            "id must be the id of one of your finished batch jobs (GET /jobs) or the URL of "
            "a batch job's results (their 'canonical' link).", argument="id")
    request = load_request(spatial_extent, temporal_extent, bands, None)
    if urlparse(id).scheme in ("http", "https"):
        job_id = _own_results_job(id, ctx)
        if job_id is None:
            return load_stac(id, spatial_extent, temporal_extent, bands, ctx=ctx)
    elif _JOB_ID.match(id):
        job_id = id
    else:
        raise errors.ProcessParameterInvalid(
            f"'{id}' is neither a batch job id (letters, digits, '-', '_', '.', '~') nor an "
            "http(s) URL of a batch job's results.", argument="id")
    return _job_results(job_id, request, ctx)


def _job_results(job_id: str, request: Any, ctx: ProcessContext, *, argument: str = "id",
                 check_property: Any = None) -> Any:
    """The results of the user's own finished job `job_id` as a cube."""
    job_results = ctx.services.job_results
    if job_results is None:
        raise errors.ProcessUnsupported("Loading the results of batch jobs needs the user's "
                                        "batch jobs, which this evaluation was not given.")
    try:
        source = job_results.collection(job_id)
    except errors.OpenEOError as exc:
        raise exc.at(argument=argument) from None
    if check_property is None:
        return source.load(request)
    return source.load(request, check_property=check_property)


def _own_results_job(url: str, ctx: ProcessContext) -> str | None:
    """The job id of an unsigned GET /jobs/{id}/results URL of this server (it needs the
    user's token, which a process cannot send: the job is looked up as the user's own);
    None for any other URL (signed links work without a token)."""
    return _own_path_match(url, _RESULTS_PATH, ctx)


def _own_collection(url: str, ctx: ProcessContext) -> str | None:
    """The collection id of a GET /collections/{id} URL of this server, else None."""
    return _own_path_match(url, _COLLECTION_PATH, ctx)


def _own_path_match(url: str, path: re.Pattern[str], ctx: ProcessContext) -> str | None:
    """The first group of `path` in a query-less URL of this server, else None."""
    return _own_match(url, path, ctx.services)


def _own_match(url: str, path: re.Pattern[str], services: Services) -> str | None:
    parts = urlparse(url)
    match = path.search(parts.path)
    settings = services.settings
    if match is None or parts.query or settings is None:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = (parts.hostname or "").lower()
    return match.group(1) if f"{host}:{port}" in settings.own_addresses() else None


def stac_sources(services: Services) -> Callable[[str], CollectionSource | None]:
    """The source a load_stac URL reads, for the push-down's grid lookups (engine/optimize.py:
    the CRS and pixel size of a load aligned with another cube): this server's own collection
    from the catalog, any other URL through the STAC reader; None when it cannot be opened
    (load_stac itself then reports why). Each URL is opened once per lookup."""
    opened: dict[str, CollectionSource | None] = {}

    def lookup(url: str) -> CollectionSource | None:
        if url not in opened:
            opened[url] = _open_for_grid(url, services)
        return opened[url]

    return lookup


def _open_for_grid(url: str, services: Services) -> CollectionSource | None:
    if urlparse(url).scheme not in ("http", "https"):
        return None
    try:
        own = _own_match(url, _COLLECTION_PATH, services)
        if own is not None:
            return None if services.catalog is None else services.catalog.get(own)
        if _own_match(url, _RESULTS_PATH, services) is not None or services.stac is None:
            return None
        return services.stac.open(url)
    except Exception:  # noqa: BLE001 - any failure: no grid known, the load reports it
        return None
