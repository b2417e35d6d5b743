"""Account management: GET /credentials/basic, HTTP Basic login that issues a bearer token."""

from __future__ import annotations

from fastapi import APIRouter

from terracube.api.deps import BasicCredentials, TokensDep, UsersDep

router = APIRouter(tags=["Account Management"])


# Sync on purpose: argon2 verification is CPU work, so FastAPI runs it in a worker thread.
@router.get("/credentials/basic", operation_id="authenticate-basic")
def authenticate_basic(credentials: BasicCredentials, users: UsersDep,
                       tokens: TokensDep) -> dict[str, str]:
    """Check name and password; the token is then sent as 'Bearer basic//<token>'."""
    name, password = credentials
    user = users.authenticate(name, password)
    return {"access_token": tokens.issue(user.user_id)}
