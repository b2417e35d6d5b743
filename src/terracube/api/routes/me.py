"""Account management: GET /me, the authenticated user and the storage of the workspace."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from terracube.api.deps import ActiveUser, UserWorkspace

router = APIRouter(tags=["Account Management"])


# Sync: FastAPI runs it in a worker thread, so summing up the workspace blocks no one.
@router.get("/me", operation_id="describe-account")
def describe_account(user: ActiveUser, workspace: UserWorkspace) -> dict[str, Any]:
    # No budget applies: the key is left out (the schema allows no null there). `free` is
    # the quota minus the files in the workspace (/files).
    storage = {"free": workspace.free(), "quota": workspace.quota}
    return {"user_id": user.user_id, "name": user.name, "storage": storage, "links": []}
