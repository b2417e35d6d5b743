"""Capabilities: well-known discovery, GET /, conformance, file formats, UDF runtimes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response

import terracube
from terracube import errors
from terracube.api.deps import API_PREFIX, API_VERSION, api_url, link, optional_user, root_url
from terracube.api.routes.admin import ADMIN_PATH
from terracube.auth.admins import is_admin
from terracube.engine.processes.udf import udf_runtimes
from terracube.processing.costs import billing
from terracube.results.formats import file_formats

STAC_VERSION = "1.0.0"

# What GET /collections and GET /collections/{collection_id} satisfy besides openEO itself.
CONFORMANCE_CLASSES = [
    f"https://api.openeo.org/{API_VERSION}",
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.openeo.org/extensions/processing-parameters/0.1.0",
    "https://api.openeo.org/extensions/remote-process-definition/0.1.0",
]

# Billing (processing/costs.py): a unit such as "credits" (never null: the official suite's
# schema check of GET / refuses `currency: null`), one plan, costs = CPU-seconds x a rate that
# is 0 unless the administrator sets one.
router = APIRouter(tags=["Capabilities"])
root_router = APIRouter(tags=["Capabilities"])  # at the host root, outside the versioned API


@root_router.get("/.well-known/openeo", operation_id="connect")
def connect(request: Request) -> dict[str, Any]:
    """The openEO versions this server offers (RFC 5785 well-known URI)."""
    return {"versions": [
        {"url": api_url(request, "/"), "api_version": API_VERSION, "production": False},
    ]}


@router.get("/", operation_id="capabilities")
def capabilities(request: Request, response: Response) -> dict[str, Any]:
    """General information about the back-end and the endpoints it implements (for the
    requesting user: the administrators' endpoint is listed for administrators only)."""
    endpoints = implemented_endpoints(request.app)
    if not _from_admin(request):
        endpoints = [e for e in endpoints if e["path"] != ADMIN_PATH]
    response.headers["Vary"] = "Authorization"
    return {
        "api_version": API_VERSION,
        "backend_version": terracube.__version__,
        "stac_version": STAC_VERSION,
        "type": "Catalog",
        "id": "terracube",
        "title": "terracube",
        "description": "terracube: an openEO back-end you run yourself. Lazy xarray/dask "
                       "processing of openEO process graphs over the collections of this "
                       "server.",
        "production": False,
        "billing": billing(request.app.state.settings),
        "conformsTo": CONFORMANCE_CLASSES,
        "endpoints": endpoints,
        "links": [
            link(request, "self", "/", title="Capabilities"),
            link(request, "root", "/", title="Capabilities"),
            {"rel": "version-history", "href": f"{root_url(request)}/.well-known/openeo",
             "type": "application/json", "title": "Supported openEO versions"},
            link(request, "conformance", "/conformance", title="Conformance classes"),
            link(request, "data", "/collections", title="Collections"),
            link(request, "service-desc", "/openapi.json",
                 type="application/vnd.oai.openapi+json;version=3.1",
                 title="OpenAPI description of this server"),
            link(request, "service-doc", "/docs", type="text/html",
                 title="Interactive API documentation"),
            # The web page of this server (terracube.web): collections, jobs and files on a
            # map. `alternate` + text/html: the API's "human-readable version" relation.
            {"rel": "alternate", "href": f"{root_url(request)}/", "type": "text/html",
             "title": "terracube web page: collections, jobs and files on a map"},
        ],
    }


def _from_admin(request: Request) -> bool:
    """Whether the request carries the token of an administrator. GET / needs no
    authentication, so a missing, stale or foreign token only means "not an administrator"
    (the API: endpoints listed are those the back-end implements and that work; the admin
    overview answers 403 to everybody else)."""
    try:
        user = optional_user(request)
    except errors.OpenEOError:
        return False
    return user is not None and is_admin(request.app.state.db, user.user_id)


@router.get("/conformance", operation_id="conformance")
def conformance() -> dict[str, list[str]]:
    return {"conformsTo": CONFORMANCE_CLASSES}


@router.get("/file_formats", operation_id="list-file-types")
def list_file_types() -> dict[str, Any]:
    return file_formats()


@router.get("/udf_runtimes", operation_id="list-udf-runtimes")
def list_udf_runtimes(request: Request) -> dict[str, Any]:
    """The Python runtime of run_udf, its libraries and whether UDFs run sandboxed."""
    return udf_runtimes(getattr(request.app.state, "settings", None))


_PATH_CONVERTER = re.compile(r"\{(\w+):\w+\}")
_LISTED_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


def implemented_endpoints(app: FastAPI) -> list[dict[str, Any]]:
    """The versioned API's routes as openEO `endpoints`, read from the app's router.

    Paths are relative to the API root; GET / itself is not listed (the spec says it
    SHOULD NOT be).
    """
    methods: dict[str, set[str]] = {}
    for route in _flat_routes(app):
        route_path = getattr(route, "path", None)
        if not getattr(route, "include_in_schema", False) or not isinstance(route_path, str):
            continue
        if not route_path.startswith(API_PREFIX + "/"):
            continue
        path = _PATH_CONVERTER.sub(r"{\1}", route_path[len(API_PREFIX):])
        verbs = {m.upper() for m in getattr(route, "methods", None) or ()} & set(_LISTED_METHODS)
        if path == "/":
            verbs.discard("GET")
        if verbs:
            methods.setdefault(path, set()).update(verbs)
    return [{"path": path, "methods": [m for m in _LISTED_METHODS if m in verbs]}
            for path, verbs in sorted(methods.items())]


def _flat_routes(app: FastAPI) -> Iterable[Any]:
    try:
        # Newer FastAPI keeps included routers as nested, lazily resolved entries.
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return app.routes
    return iter_route_contexts(app.routes)
