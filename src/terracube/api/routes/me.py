"""Account management: GET /me, the authenticated user, the storage of the workspace and the
compute allowance (processing/costs.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from terracube.api.deps import ActiveUser, BudgetsDep, OidcDep, SettingsDep, UserWorkspace
from terracube.auth.admins import is_admin
from terracube.processing.costs import default_plan

router = APIRouter(tags=["Account Management"])


# Sync: FastAPI runs it in a worker thread, so summing up the workspace blocks no one.
@router.get("/me", operation_id="describe-account")
def describe_account(request: Request, user: ActiveUser, workspace: UserWorkspace, oidc: OidcDep,
                     budgets: BudgetsDep, settings: SettingsDep) -> dict[str, Any]:
    # `free` is the quota minus the files in the workspace (/files).
    storage = {"free": workspace.free(), "quota": workspace.quota}
    # People who sign in with OpenID Connect are shown with the name their provider gives.
    identity = oidc.identity_of(user.user_id) if oidc is not None else None
    name = (identity.name or identity.email or user.name) if identity is not None else user.name
    out: dict[str, Any] = {"user_id": user.user_id, "name": name, "storage": storage,
                           "default_plan": default_plan(settings)}
    # openEO Platform's account field, which its sample notebooks print
    # (`describe_account()["roles"]`): what the account may do here.
    out["roles"] = ["user", "admin"] if is_admin(request.app.state.db, user.user_id) \
        else ["user"]
    allowance = budgets.allowance(user.user_id)
    if allowance.remaining is not None:
        # What an administrator granted (`terracube users budget`), in CPU-seconds per week;
        # `budget` in the currency only where a rate turns CPU time into costs.
        out["terracube:compute"] = allowance.to_json()
        if settings.billing_rate > 0:
            out["budget"] = round(allowance.remaining * settings.billing_rate, 6)
    # Without a limit `budget` is left out (the schema allows no null there).
    out["links"] = []
    return out
