"""Account management: GET /credentials/basic, HTTP Basic login that issues a bearer token."""

from __future__ import annotations

from fastapi import APIRouter, Request

from terracube import errors
from terracube.api.deps import BasicCredentials, TokensDep, UsersDep
from terracube.api.login_limit import LoginLimiter

router = APIRouter(tags=["Account Management"])


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
