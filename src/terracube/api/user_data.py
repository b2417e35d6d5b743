"""Dependencies of the routes over a user's own data (/me, /files, /process_graphs).

The signed-in user (recorded as active, which keeps the workspace from being flagged as
inactive), the user's workspace, the store of user-defined processes, and pagination of
the lists.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from terracube.api.deps import CurrentUser, api_url, int_query
from terracube.auth.users import User
from terracube.udp.store import UdpStore
from terracube.workspace.files import Workspace, workspace_for
from terracube.workspace.retention import record_activity


def active_user(request: Request, user: CurrentUser) -> User:
    """The authenticated user, noted as active (see terracube.workspace.retention)."""
    record_activity(request.app.state.db, user.user_id)
    return user


def user_workspace(request: Request, user: Annotated[User, Depends(active_user)]) -> Workspace:
    return workspace_for(request.app.state.settings, user.user_id)


def udp_store(request: Request) -> UdpStore:
    state = request.app.state
    store = getattr(state, "udps", None)
    if store is None:  # built on first use from the app's database
        store = state.udps = UdpStore(state.db)
    return store


ActiveUser = Annotated[User, Depends(active_user)]
UserWorkspace = Annotated[Workspace, Depends(user_workspace)]
UdpStoreDep = Annotated[UdpStore, Depends(udp_store)]


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
