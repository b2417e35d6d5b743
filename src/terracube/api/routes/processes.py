"""Process discovery: GET /processes, the predefined processes of the registry with their specs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

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


def _descriptions(request: Request, registry: Any) -> list[dict]:
    # The registry is fixed for the app's lifetime, so the descriptions are built once
    # (two concurrent first requests may both build them; the result is the same).
    state = request.app.state
    cached = getattr(state, "process_descriptions", None)
    if cached is None:
        cached = state.process_descriptions = process_descriptions(registry.ids())
    return cached
