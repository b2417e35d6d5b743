"""Account management: GET /me, the authenticated user."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from terracube.api.deps import CurrentUser

router = APIRouter(tags=["Account Management"])


@router.get("/me", operation_id="describe-account")
def describe_account(user: CurrentUser) -> dict[str, Any]:
    # No storage quota or budget applies yet: the keys are left out (the schema allows no null).
    return {"user_id": user.user_id, "name": user.name, "links": []}
