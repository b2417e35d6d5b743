"""Process discovery: GET /processes, the predefined processes of the registry with their specs
(also under the namespace `backend`, as CDSE serves them: GET /processes/backend[/{id}])."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from terracube import errors
from terracube.api.deps import RegistryDep, link
from terracube.api.pagination import page_of
from terracube.engine.specs import process_descriptions

router = APIRouter(tags=["Process Discovery"])


@router.get("/processes", operation_id="list-processes")
def list_processes(request: Request, registry: RegistryDep) -> dict[str, Any]:
    descriptions = {d["id"]: d for d in _descriptions(request, registry)}
    ids, pages = page_of(request, list(descriptions), "/processes")
    return {
        "processes": [descriptions[i] for i in ids],
        "links": [link(request, "self", "/processes", title="Predefined processes"), *pages],
    }


# Not in API 1.2 (a draft, openeo-api#348), but the client's `list_processes(namespace=...)`
# and `describe_process(id, namespace=...)` call it, and CDSE (openeo-python-driver) serves it:
# "backend" is the namespace of the predefined processes, "u:<user>" a user's public ones
# (routes/process_graphs.py).
@router.get("/processes/backend", include_in_schema=False)
def list_backend_processes(request: Request, registry: RegistryDep) -> dict[str, Any]:
    """The predefined processes, all on one page."""
    return {"processes": _descriptions(request, registry),
            "links": [link(request, "self", "/processes/backend", title="Predefined processes")]}


@router.get("/processes/backend/{process_id}", include_in_schema=False)
def describe_backend_process(request: Request, process_id: str,
                             registry: RegistryDep) -> dict[str, Any]:
    """One predefined process with its full description."""
    for description in _descriptions(request, registry):
        if description["id"] == process_id:
            return description
    raise errors.ProcessUnsupported(
        f"There is no predefined process '{process_id}'; GET /processes lists them.")


def _descriptions(request: Request, registry: Any) -> list[dict]:
    # The registry is fixed for the app's lifetime, so the descriptions are built once
    # (two concurrent first requests may both build them; the result is the same).
    state = request.app.state
    cached = getattr(state, "process_descriptions", None)
    if cached is None:
        cached = state.process_descriptions = process_descriptions(registry.ids())
    return cached
