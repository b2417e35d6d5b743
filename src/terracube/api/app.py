"""The FastAPI application: create_app(settings) builds the services and mounts the routes."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import terracube
from terracube.api.body_limit import BodyLimitMiddleware
from terracube.api.deps import API_PREFIX
from terracube.api.errors import install_error_handlers
from terracube.api.proxy import ProxyMiddleware, route_path
from terracube.api.routes import (
    admin,
    capabilities,
    collections,
    credentials,
    files,
    jobs,
    me,
    process_graphs,
    processes,
    processing,
    services,
)
from terracube.auth.oidc import OidcAccounts, OidcVerifier
from terracube.auth.tokens import TokenStore
from terracube.auth.users import DEV_PASSWORD, DEV_USER, UserStore, check_safe_to_serve
from terracube.catalog import Catalog
from terracube.db import open_database
from terracube.engine.registry import build_registry
from terracube.engine.udf_sandbox import UdfLimits, prestart
from terracube.executor import Executor
from terracube.jobs.files import JobFolders
from terracube.jobs.pool import WorkerPool
from terracube.jobs.signing import UrlSigner, signing_key
from terracube.jobs.store import JobStore
from terracube.jobs.sync_logs import SyncLogStore
from terracube.processing.costs import ComputeBudgets
from terracube.settings import Settings
from terracube.web.page import install_web_page

log = logging.getLogger(__name__)

# The routers of the versioned API, mounted under API_PREFIX; one module per openEO resource.
API_ROUTERS = (capabilities, collections, processes, processing, credentials, me, services,
               process_graphs, files, jobs, admin)


def create_app(settings: Settings | None = None, *, catalog: Any = None,
               registry: Any = None, start_workers: bool = False) -> FastAPI:
    """The terracube API app; catalog and registry default to the real ones for `settings`.

    With `start_workers` (terracube serve), the app's lifespan runs `settings.workers` batch
    job worker processes. Raises UnsafeToServe if the settings must not be served on a
    non-loopback host.
    """
    settings = settings or Settings()
    db = open_database(settings.database_url, settings.database_busy_timeout_seconds)
    users = UserStore(db)
    check_safe_to_serve(settings, users)
    if settings.dev_default_user:
        created = users.ensure_dev_user()
        log.warning("!" * 72)
        log.warning("dev default user %s/%s %s — do not expose", DEV_USER, DEV_PASSWORD,
                    "created" if created else "enabled")
        log.warning("!" * 72)
    if registry is None:
        registry = build_registry()
    if catalog is None:
        catalog = Catalog(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        pool = None
        if start_workers and settings.workers > 0:
            pool = WorkerPool(settings, settings.workers)
            pool.start()
        _app.state.worker_pool = pool
        # spare UDF processes, started in the background (a bubblewrap probe, then imports)
        prestart(UdfLimits.from_settings(settings), settings.udf_spare_runners, now=False)
        if start_workers and settings.udf_enabled and settings.udf_spares_at_start:
            threading.Thread(target=prestart, name="udf-spares", daemon=True, args=(
                UdfLimits.from_settings(settings), settings.udf_spare_runners)).start()
        # One executor for all synchronous results (a dask cluster or local threads).
        _app.state.executor = await run_in_threadpool(Executor.from_settings, settings)
        try:
            yield
        finally:
            await run_in_threadpool(_app.state.executor.close)
            if pool is not None:
                pool.stop()  # running jobs are queued again and resume with the next start
            db.dispose()

    app = FastAPI(
        title="terracube",
        version=terracube.__version__,
        description="openEO API 1.2 back-end",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.executor = None  # built by the lifespan; until then: local threads
    app.state.db = db
    app.state.users = users
    app.state.tokens = TokenStore(db, settings.token_ttl_seconds)
    app.state.oidc = (OidcAccounts(db, OidcVerifier(settings.oidc_providers))
                      if settings.oidc_providers else None)
    app.state.catalog = catalog
    app.state.registry = registry
    app.state.jobs = JobStore(db)
    app.state.budgets = ComputeBudgets(db)
    app.state.sync_logs = SyncLogStore(db)
    app.state.job_folders = JobFolders(settings.data_dir)
    app.state.url_signer = UrlSigner(signing_key(settings), settings.signed_url_ttl_seconds)

    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_body_bytes,
                       unlimited_prefix=f"{API_PREFIX}/files/")  # uploads: streamed, quota
    app.add_middleware(MergeSlashesMiddleware)
    app.add_middleware(CorsMiddleware)  # CORS headers on everything
    # Outermost: root path and trusted X-Forwarded-* headers, before anything reads the URL.
    app.add_middleware(ProxyMiddleware, root_path=settings.root_path,
                       forwarded_allow_ips=settings.forwarded_allow_ips)

    app.include_router(capabilities.root_router)
    install_web_page(app, API_PREFIX, settings.oidc_providers)  # the page at / (terracube.web)
    for module in API_ROUTERS:
        app.include_router(module.router, prefix=API_PREFIX)
    if settings.oidc_providers:
        app.include_router(credentials.oidc_router, prefix=API_PREFIX)
    return app


# --- CORS (openEO API 1.2, section "Cross-Origin Resource Sharing") -------------------------------
# Content-Length is safelisted by browsers, and the API says such headers MUST NOT be listed.
EXPOSE_HEADERS = "Location, OpenEO-Identifier, OpenEO-Costs, Link, Accept-Ranges, Content-Range"
ALLOW_HEADERS = "Authorization, Content-Type"
_ALL_METHODS = ("OPTIONS", "GET", "POST", "PATCH", "PUT", "DELETE")


class MergeSlashesMiddleware:
    """`/openeo/1.2//jobs/x` is `/openeo/1.2/jobs/x`: clients that join an API root URL ending
    in `/` with a path starting with `/` (the official test suite's job helpers do) still
    reach the endpoint. Only the slashes right after the API root are merged: further on,
    `//` is part of what a path means (e.g. /files/a//b.txt is refused as a file path).
    Paths under the roots of API 1.0 and 1.1 (`/openeo/1.0/...`, `/openeo/1.1.0/...`) are
    answered as under this API's root."""

    _DOUBLED = re.compile("^" + re.escape(API_PREFIX) + "//+")
    _DOUBLED_RAW = re.compile(b"^" + re.escape(API_PREFIX.encode()) + b"//+")
    # Older API versions' roots are this one, as on CDSE (which serves /openeo/1.0/ and
    # /openeo/1.1/ too): programs and published process URLs written with
    # .../openeo/1.0/processes/u:<user>/<id> or openeo.connect(".../openeo/1.1.0/") still work.
    _OLDER = re.compile(r"^/openeo/1\.[01](?:\.0)?(?=/|$)")
    _OLDER_RAW = re.compile(rb"^/openeo/1\.[01](?:\.0)?(?=/|$)")

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = route_path(scope) if scope["type"] == "http" else ""
        if self._OLDER.match(path):
            scope = self._rewrite(scope, path, self._OLDER, self._OLDER_RAW, API_PREFIX)
            path = route_path(scope)
        if self._DOUBLED.match(path):
            scope = self._rewrite(scope, path, self._DOUBLED, self._DOUBLED_RAW,
                                  API_PREFIX + "/")
        await self.app(scope, receive, send)

    @staticmethod
    def _rewrite(scope: Scope, path: str, pattern: re.Pattern[str],
                 raw_pattern: re.Pattern[bytes], replacement: str) -> Scope:
        # Below the root path (api/proxy.py puts it in front of every path).
        root = scope.get("root_path", "")
        scope = {**scope, "path": root + pattern.sub(replacement, path, count=1)}
        raw = scope.get("raw_path")
        if isinstance(raw, bytes) and raw.startswith(root.encode()):
            scope["raw_path"] = root.encode() + raw_pattern.sub(
                replacement.encode(), raw[len(root.encode()):], count=1)
        return scope


class CorsMiddleware:
    """CORS headers on every response, and 204 answers to every OPTIONS (preflight) request.

    Starlette's CORSMiddleware does not fit: it only answers OPTIONS with an
    Access-Control-Request-Method header, answers 200 instead of 204 and omits the headers
    when there is no Origin, while openEO requires them on every response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = _header(scope, b"origin")
        cors = [
            (b"access-control-allow-origin", origin or b"*"),
            (b"access-control-allow-credentials", b"true"),
            (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
        ]
        if origin:
            cors.append((b"vary", b"Origin"))
        if scope["method"] == "OPTIONS":
            methods = ", ".join(_allowed_methods(scope))
            await send({"type": "http.response.start", "status": 204, "headers": cors + [
                (b"access-control-allow-methods", methods.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", b"3600"),
                (b"allow", methods.encode()),
                (b"content-type", b"application/json"),
            ]})
            await send({"type": "http.response.body", "body": b""})
            return

        names = {name for name, _ in cors}

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + cors}
            await send(message)

        await self.app(scope, receive, send_with_cors)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value
    return None


def _allowed_methods(scope: Scope) -> list[str]:
    """The methods the request path accepts; all of them if the path is unknown."""
    router = getattr(scope.get("app"), "router", None)
    routes = getattr(router, "routes", [])
    found = []
    for method in _ALL_METHODS[1:]:
        probe = {**scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            found.append(method)
    if not found:
        # Unknown path: let the browser send the real request, which gets a 404 error.
        return list(_ALL_METHODS)
    return ["OPTIONS", *found]
