"""FastAPI dependencies, all of them: the services built in create_app, the authenticated
user (and the active user with their workspace), query parameters, bodies and URLs."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from fastapi import Depends, Request

from terracube import errors
from terracube.api.errors import BadRequest
from terracube.api.input_limits import InputLimits, check_body, parse_json
from terracube.api.proxy import ORIGIN_KEY
from terracube.auth.oidc import OIDC_TOKEN_PREFIX, OidcAccounts
from terracube.auth.tokens import BASIC_TOKEN_PREFIX, TokenStore
from terracube.auth.users import User, UserStore
from terracube.catalog import Catalog
from terracube.engine.registry import ProcessRegistry
from terracube.executor import Executor
from terracube.jobs.files import JobFolders
from terracube.jobs.signing import UrlSigner
from terracube.jobs.store import JobStore
from terracube.jobs.sync_logs import SyncLogStore
from terracube.processing.costs import ComputeBudgets
from terracube.settings import Settings
from terracube.udp.store import UdpStore
from terracube.workspace.files import Workspace, workspace_for
from terracube.workspace.retention import record_activity

API_VERSION = "1.2.0"
API_PREFIX = "/openeo/1.2"


# --- services (built once in create_app, kept on app.state) -------------------------------------
def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_users(request: Request) -> UserStore:
    return request.app.state.users


def get_tokens(request: Request) -> TokenStore:
    return request.app.state.tokens


def get_oidc(request: Request) -> OidcAccounts | None:
    """OpenID Connect sign-in (None when no provider is configured)."""
    return getattr(request.app.state, "oidc", None)


def get_catalog(request: Request) -> Catalog:
    return request.app.state.catalog


def get_registry(request: Request) -> ProcessRegistry:
    return request.app.state.registry


def get_executor(request: Request) -> Executor | None:
    """The executor of synchronous results (None until the app's lifespan built it)."""
    return getattr(request.app.state, "executor", None)


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_budgets(request: Request) -> ComputeBudgets:
    return request.app.state.budgets


def get_sync_logs(request: Request) -> SyncLogStore:
    return request.app.state.sync_logs


def get_job_folders(request: Request) -> JobFolders:
    return request.app.state.job_folders


def get_signer(request: Request) -> UrlSigner:
    return request.app.state.url_signer


def get_udp_store(request: Request) -> UdpStore:
    state = request.app.state
    store = getattr(state, "udps", None)
    if store is None:  # built on first use from the app's database
        store = state.udps = UdpStore(state.db)
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
UsersDep = Annotated[UserStore, Depends(get_users)]
TokensDep = Annotated[TokenStore, Depends(get_tokens)]
OidcDep = Annotated[OidcAccounts | None, Depends(get_oidc)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
RegistryDep = Annotated[ProcessRegistry, Depends(get_registry)]
ExecutorDep = Annotated[Executor | None, Depends(get_executor)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
FoldersDep = Annotated[JobFolders, Depends(get_job_folders)]
BudgetsDep = Annotated[ComputeBudgets, Depends(get_budgets)]
SyncLogsDep = Annotated[SyncLogStore, Depends(get_sync_logs)]
SignerDep = Annotated[UrlSigner, Depends(get_signer)]
UdpStoreDep = Annotated[UdpStore, Depends(get_udp_store)]


# --- authentication -------------------------------------------------------------------------------
def _authorization(request: Request) -> tuple[str, str] | None:
    """(scheme in lower case, credentials) of the Authorization header, None without one."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        return None
    scheme, _, credentials = header.partition(" ")
    return scheme.lower(), credentials.strip()


def _bearer_user(request: Request) -> User | None:
    auth = _authorization(request)
    if auth is None:
        return None
    scheme, credentials = auth
    if scheme != "bearer" or not credentials:
        raise _challenge(errors.AuthenticationRequired(
            "This endpoint needs 'Authorization: Bearer basic//<token>' (or 'Bearer "
            "oidc/<provider>/<access token>'); get a token from GET /credentials/basic."))
    if credentials.startswith(BASIC_TOKEN_PREFIX):
        tokens: TokenStore = request.app.state.tokens
        return tokens.resolve(credentials[len(BASIC_TOKEN_PREFIX):])
    oidc: OidcAccounts | None = getattr(request.app.state, "oidc", None)
    if credentials.startswith(OIDC_TOKEN_PREFIX) and oidc is not None:
        return oidc.resolve(credentials[len(OIDC_TOKEN_PREFIX):])
    method = credentials.split("/", 1)[0]
    prefixes = f"'{BASIC_TOKEN_PREFIX}'" + (" or 'oidc/<provider>/'" if oidc is not None else "")
    raise errors.AuthenticationSchemeInvalid(
        f"Authentication method '{method}' is not supported; this back-end supports "
        f"{'basic and oidc' if oidc is not None else 'basic'} authentication (Bearer tokens "
        f"start with {prefixes}).")


# Sync functions on purpose: FastAPI runs them in a worker thread, so the database lookup
# does not block the event loop.
def current_user(request: Request) -> User:
    """The user of the Bearer token; 401 AuthenticationRequired without one."""
    user = _bearer_user(request)
    if user is None:
        raise _challenge(errors.AuthenticationRequired(
            "This endpoint needs authentication: get a token from GET /credentials/basic and "
            "send it as 'Authorization: Bearer basic//<token>'."))
    return user


def optional_user(request: Request) -> User | None:
    """The user if a Bearer token was sent (it must be valid), else None."""
    return _bearer_user(request)


def basic_credentials(request: Request) -> tuple[str, str]:
    """(user name, password) from an HTTP Basic Authorization header (RFC 7617)."""
    auth = _authorization(request)
    if auth is None:
        raise _challenge(errors.AuthenticationRequired(
            "Send your user name and password with HTTP Basic authentication "
            "('Authorization: Basic <base64 of name:password>')."), basic=True)
    scheme, credentials = auth
    if scheme != "basic":
        raise errors.AuthenticationSchemeInvalid(
            "GET /credentials/basic expects HTTP Basic authentication "
            "('Authorization: Basic <base64 of name:password>').")
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise errors.CredentialsInvalid(
            "The Basic credentials are not valid base64 of 'name:password'.") from None
    name, sep, password = decoded.partition(":")
    if not sep:
        raise errors.CredentialsInvalid("The Basic credentials have no ':' between name and "
                                        "password.")
    return name, password


def _challenge(error: errors.OpenEOError, basic: bool = False) -> errors.OpenEOError:
    # RFC 9110: a 401 response carries a WWW-Authenticate challenge.
    error.headers = {  # type: ignore[attr-defined]
        "WWW-Authenticate": 'Basic realm="openEO", charset="UTF-8"' if basic else "Bearer"}
    return error


CurrentUser = Annotated[User, Depends(current_user)]
OptionalUser = Annotated[User | None, Depends(optional_user)]
BasicCredentials = Annotated[tuple[str, str], Depends(basic_credentials)]


def active_user(request: Request, user: CurrentUser) -> User:
    """The authenticated user, noted as active (see terracube.workspace.retention) — for the
    routes over the user's own data (/me, /files, /process_graphs, /jobs)."""
    record_activity(request.app.state.db, user.user_id)
    return user


ActiveUser = Annotated[User, Depends(active_user)]


def user_workspace(request: Request, user: ActiveUser) -> Workspace:
    return workspace_for(request.app.state.settings, user.user_id)


UserWorkspace = Annotated[Workspace, Depends(user_workspace)]


# --- request bodies -------------------------------------------------------------------------------
def int_query(request: Request, name: str, minimum: int) -> int | None:
    """An integer query parameter (None when absent); 400 BadRequest below `minimum`."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    # Beyond any real page size or offset (and beyond what the database's integers hold).
    value = min(value, 2**31 - 1)
    if value < minimum:
        raise BadRequest(f"The query parameter '{name}' must be an integer >= {minimum}, "
                         f"got {raw!r}.")
    return value


async def json_object_body(request: Request) -> dict[str, Any]:
    """The request body as a JSON object; 400 BadRequest if it is not one."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequest("The request needs a JSON object as body.")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    settings: Settings = request.app.state.settings
    check_body(body, InputLimits(settings.max_json_depth, settings.max_graph_nodes,
                                 settings.max_graph_chain))
    return body


JsonObjectBody = Annotated[dict[str, Any], Depends(json_object_body)]


def paginate(request: Request, items: list[Any], path: str) -> tuple[list[Any], list[dict]]:
    """One page of `items` and its `links` for the `limit` and `offset` query parameters.

    Without `limit` (or with an empty one) everything is returned, as the API requires for
    clients that do not paginate; otherwise the links have `next`/`prev`/`first`.
    """
    limit = int_query(request, "limit", minimum=1)
    offset = int_query(request, "offset", minimum=0) or 0
    if limit is None:
        return items[offset:], []
    page = items[offset:offset + limit]
    links = []
    if offset + limit < len(items):
        links.append(_page_link(request, "next", path, limit, offset + limit))
    if offset > 0:
        links.append(_page_link(request, "prev", path, limit, max(0, offset - limit)))
        links.append(_page_link(request, "first", path, limit, 0))
    return page, links


def _page_link(request: Request, rel: str, path: str, limit: int, offset: int) -> dict:
    query = f"?limit={limit}" + (f"&offset={offset}" if offset else "")
    return {"rel": rel, "href": api_url(request, path) + query, "type": "application/json"}


# --- URLs -----------------------------------------------------------------------------------------
def root_url(request: Request, *, trusted: bool = False) -> str:
    """The absolute URL of the server's root as clients see it, without trailing slash:
    TERRACUBE_PUBLIC_URL if set, else the request's own (root path and trusted proxy headers
    applied by api/proxy.py). `trusted` (signed links): never from a Host header a client could
    forge, only from the connection's address or what a trusted proxy forwarded."""
    public = request.app.state.settings.public_url
    if public:
        return public
    origin = request.scope.get(ORIGIN_KEY) if trusted else None
    if origin:
        return origin + request.scope.get("root_path", "")
    return str(request.base_url).rstrip("/")


def api_url(request: Request, path: str = "/", *, trusted: bool = False) -> str:
    """The absolute URL of an API path, e.g. api_url(request, "/collections"); every URL the
    server emits is built here (or by root_url), so the proxy settings apply to all."""
    return f"{root_url(request, trusted=trusted)}{API_PREFIX}{path}"


def link(request: Request, rel: str, path: str, *, type: str = "application/json",
         title: str | None = None) -> dict[str, str]:
    """A link object to an API path."""
    out = {"rel": rel, "href": api_url(request, path), "type": type}
    if title:
        out["title"] = title
    return out
