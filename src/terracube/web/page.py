"""The routes of the web page: GET / (the page; JSON clients are sent on to the API) and its
static files, ours and Leaflet's, under versioned URLs that may be cached for a long time.

Every URL in the page is relative (`web/static/...`, `openeo/1.2/...`) to a `<base href>` of
the root path, so the page works under a path prefix behind a reverse proxy. Only files
listed at start-up are served: a request path is looked up, never joined onto a folder.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import jinja2
import xstatic.pkg.leaflet as xstatic_leaflet
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

import terracube
from terracube.settings import OidcProviderSettings

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
LEAFLET_DIR = Path(xstatic_leaflet.BASE_DIR)
LEAFLET_VERSION = xstatic_leaflet.VERSION
STATIC_PATH = "/web/static/{version}/{path:path}"
LEAFLET_PATH = "/web/leaflet/{version}/{path:path}"
WEB_EDITOR = "https://editor.openeo.org/"
# Versioned URLs never change content: a year, and no revalidation.
IMMUTABLE = "public, max-age=31536000, immutable"
# The page itself names the current versions: always revalidated.
PAGE_CACHE = "no-cache"
# Everything the page loads comes from this server; map tiles may come from public_url. The
# page may also talk to the OpenID Connect providers it signs in with (oidc_origins).
CSP_TEMPLATE = ("default-src 'self'; script-src 'self'; connect-src 'self'{providers}; "
                "img-src * data: blob:; style-src 'self'; "
                "base-uri 'self'; form-action 'self'; frame-ancestors 'self'")
PAGE_GRANT = "authorization_code+pkce"  # the flow the page signs in with (static/oidc.js)


def oidc_origins(providers: Sequence[OidcProviderSettings]) -> list[str]:
    """The origins of the providers the page can sign in with — those with a default client
    for the authorization code flow with PKCE and a redirect URL — which the page's fetches
    (discovery, token endpoint) must reach."""
    origins: list[str] = []
    for provider in providers:
        if not any(PAGE_GRANT in c.grant_types and c.redirect_urls
                   for c in provider.default_clients):
            continue
        url = urlsplit(provider.issuer)
        origin = f"{url.scheme}://{url.netloc}"
        # one origin per provider: no wildcards, nothing a provider's settings can widen
        if url.scheme in ("http", "https") and url.netloc and origin not in origins \
                and not any(ch in origin for ch in " ;,'\""):
            origins.append(origin)
    return origins


def content_security_policy(providers: Sequence[OidcProviderSettings] = ()) -> str:
    """The page's CSP: this server only, plus the origins of its sign-in providers."""
    return CSP_TEMPLATE.format(providers="".join(" " + o for o in oidc_origins(providers)))


def _files(folder: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """The servable files below `folder`: '/'-separated relative path -> file."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix in suffixes}


STATIC_FILES = _files(STATIC_DIR, (".js", ".css", ".svg", ".png"))
LEAFLET_FILES = _files(LEAFLET_DIR, (".js", ".css", ".png", ".svg"))


def _digest(files: dict[str, Path]) -> str:
    """A short hash of the files' names and contents: the version in their URLs."""
    h = hashlib.sha256()
    for name, path in files.items():
        h.update(name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


STATIC_VERSION = _digest(STATIC_FILES)
_templates = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                                autoescape=True, undefined=jinja2.StrictUndefined)


def wants_json(request: Request) -> bool:
    """A client that asks for JSON and not HTML (a script probing the host root)."""
    accept = request.headers.get("accept", "")
    return "json" in accept and "text/html" not in accept


def web_router(api_prefix: str, providers: Sequence[OidcProviderSettings] = ()) -> APIRouter:
    """The page's routes; `api_prefix` is the versioned API's path, e.g. /openeo/1.2;
    `providers` the OpenID Connect providers of the server."""
    router = APIRouter(include_in_schema=False)
    api_relative = api_prefix.strip("/") + "/"
    csp = content_security_policy(providers)

    @router.get("/")
    def page(request: Request) -> Response:
        root = request.scope.get("root_path", "")  # behind a proxy's path prefix
        if wants_json(request):
            return RedirectResponse(f"{root}{api_prefix}/", status_code=307)
        # <base href>: the relative URLs resolve below the prefix also when the page was
        # asked for as /prefix (no trailing slash).
        html = _templates.get_template("index.html").render(
            base=f"{root}/", api=api_relative, version=terracube.__version__,
            static=f"web/static/{STATIC_VERSION}", leaflet=f"web/leaflet/{LEAFLET_VERSION}",
            web_editor=WEB_EDITOR)
        return HTMLResponse(html, headers={"Cache-Control": PAGE_CACHE,
                                           "Content-Security-Policy": csp})

    @router.get(STATIC_PATH)
    def static(version: str, path: str) -> Response:
        return _serve(STATIC_FILES, path, version == STATIC_VERSION)

    @router.get(LEAFLET_PATH)
    def leaflet(version: str, path: str) -> Response:
        return _serve(LEAFLET_FILES, path, version == LEAFLET_VERSION)

    return router


def _serve(files: dict[str, Path], path: str, current: bool) -> Response:
    file = files.get(path)
    if file is None:
        return Response("Not found", status_code=404, media_type="text/plain")
    media_type = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
    if file.suffix == ".js":
        media_type = "text/javascript"  # ES modules need a JavaScript type
    # An old version's URL (a page loaded before an upgrade) gets today's file, uncached.
    cache = IMMUTABLE if current else "no-cache"
    return FileResponse(file, media_type=media_type, headers={"Cache-Control": cache})


def install_web_page(app: FastAPI, api_prefix: str,
                     providers: Sequence[OidcProviderSettings] = ()) -> None:
    """Serve the web page at the app's root."""
    app.include_router(web_router(api_prefix, providers))
