"""A terracube extension for administrators: GET /terracube/admin/overview, every user's
batch jobs and workspace use (the web page's admin view reads it; docs/user-guide/web-page.md).

Not part of openEO: it lives in the `terracube/` namespace of the API. Only accounts with the
admin role (`terracube users admin NAME`, auth/admins.py) may read it; everybody else gets
403 PermissionsInsufficient.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from terracube import errors
from terracube.api.deps import ActiveUser, JobsDep, SettingsDep, int_query
from terracube.auth.admins import admin_ids, is_admin
from terracube.auth.users import User
from terracube.jobs import documents as job_docs
from terracube.jobs.logs import rfc3339
from terracube.jobs.store import STATUSES
from terracube.workspace.retention import workspace_status

router = APIRouter(tags=["terracube extensions"])

ADMIN_PATH = "/terracube/admin/overview"
# The newest jobs of all users listed when the request sets no `limit`.
DEFAULT_JOB_LIMIT = 200


def admin_user(request: Request, user: ActiveUser) -> User:
    """The authenticated user if they hold the admin role; 403 otherwise."""
    if not is_admin(request.app.state.db, user.user_id):
        raise errors.PermissionsInsufficient(
            f"GET {ADMIN_PATH} is for administrators; '{user.user_id}' does not hold the "
            "admin role (an administrator grants it with `terracube users admin NAME`).")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


# Sync: summing up every workspace reads the disk; FastAPI runs it in a worker thread.
@router.get(ADMIN_PATH, operation_id="terracube-admin-overview")
def admin_overview(request: Request, admin: AdminUser, jobs: JobsDep,
                   settings: SettingsDep) -> dict[str, Any]:
    """Every user with their job counts and workspace use, and the newest jobs of all users
    (`limit`, default 200)."""
    limit = int_query(request, "limit", minimum=1) or DEFAULT_JOB_LIMIT
    db = request.app.state.db
    admins = admin_ids(db)
    all_jobs, _ = jobs.list(None)
    counts: dict[str, dict[str, int]] = {}
    for job in all_jobs:
        per_user = counts.setdefault(job.user_id, dict.fromkeys(STATUSES, 0))
        per_user[job.status] = per_user.get(job.status, 0) + 1
    users = [{
        "user_id": ws.user_id,
        "admin": ws.user_id in admins,
        "last_active": rfc3339(ws.last_active),
        "jobs": counts.get(ws.user_id, dict.fromkeys(STATUSES, 0)),
        "storage": {"used": ws.used, "quota": settings.storage_quota_bytes},
    } for ws in workspace_status(settings, db)]
    listed = [{**job_docs.job_summary(job), "user_id": job.user_id}
              for job in all_jobs[:limit]]
    return {"users": users, "jobs": listed, "job_count": len(all_jobs)}
