"""Account management: GET /me, the authenticated user and the storage of the workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from terracube.api.deps import ActiveUser, OidcDep, UserWorkspace

router = APIRouter(tags=["Account Management"])


# Sync: FastAPI runs it in a worker thread, so summing up the workspace blocks no one.
@router.get("/me", operation_id="describe-account")
def describe_account(user: ActiveUser, workspace: UserWorkspace,
                     oidc: OidcDep) -> dict[str, Any]:
    # No budget applies: the key is left out (the schema allows no null there). `free` is
    # the quota minus the files in the workspace (/files).
    storage = {"free": workspace.free(), "quota": workspace.quota}
    # People who sign in with OpenID Connect are shown with the name their provider gives.
    identity = oidc.identity_of(user.user_id) if oidc is not None else None
    name = (identity.name or identity.email or user.name) if identity is not None else user.name
    return {"user_id": user.user_id, "name": name, "storage": storage, "links": []}
