"""Account management: GET /credentials/basic, HTTP Basic login that issues a bearer token, and
GET /credentials/oidc, the OpenID Connect providers whose access tokens are accepted."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from terracube import errors
from terracube.api.deps import BasicCredentials, SettingsDep, TokensDep, UsersDep
from terracube.api.login_limit import LoginLimiter

router = APIRouter(tags=["Account Management"])
# Mounted only when providers are configured (create_app): the API requires at least one
# provider in the list, so without any the endpoint is neither listed nor served (404).
oidc_router = APIRouter(tags=["Account Management"])


# Sync on purpose: argon2 verification is CPU work, so FastAPI runs it in a worker thread.
@router.get("/credentials/basic", operation_id="authenticate-basic")
def authenticate_basic(request: Request, credentials: BasicCredentials, users: UsersDep,
                       tokens: TokensDep) -> dict[str, str]:
    """Check name and password; the token is then sent as 'Bearer basic//<token>'.
    Too many wrong passwords for one name answer 429 for a while (api/login_limit.py)."""
    name, password = credentials
    state = request.app.state
    limiter = getattr(state, "login_limiter", None)
    if limiter is None:
        limiter = state.login_limiter = LoginLimiter()
    limiter.check(name)
    try:
        user = users.authenticate(name, password)
    except errors.CredentialsInvalid:
        limiter.failed(name)
        raise
    return {"access_token": tokens.issue(user.user_id)}


@oidc_router.get("/credentials/oidc", operation_id="authenticate-oidc")
def authenticate_oidc(settings: SettingsDep) -> dict[str, Any]:
    """The OpenID Connect providers, the first one the default; clients send their access
    tokens as 'Bearer oidc/<provider id>/<access token>'."""
    providers = []
    for p in settings.oidc_providers:
        item: dict[str, Any] = {"id": p.id, "issuer": p.issuer, "title": p.title,
                                "scopes": p.scopes}
        if p.description:
            item["description"] = p.description
        if p.default_clients:
            item["default_clients"] = [
                c.model_dump(exclude_defaults=True) | {"id": c.id, "grant_types": c.grant_types}
                for c in p.default_clients]
        providers.append(item)
    return {"providers": providers}
