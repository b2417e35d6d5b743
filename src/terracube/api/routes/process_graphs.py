"""User-defined processes: GET /process_graphs, GET/PUT/DELETE /process_graphs/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from terracube.api.deps import ActiveUser, JsonObjectBody, RegistryDep, UdpStoreDep, paginate

router = APIRouter(tags=["User-Defined Processes"])

_PROCESS_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["process_graph"],
    "properties": {"process_graph": {"type": "object"}, "id": {"type": "string"},
                   "summary": {"type": "string"}, "description": {"type": "string"},
                   "parameters": {"type": "array", "items": {"type": "object"}},
                   "returns": {"type": "object"}}}}}}


@router.get("/process_graphs", operation_id="list-custom-processes")
def list_custom_processes(request: Request, user: ActiveUser,
                          udps: UdpStoreDep) -> dict[str, Any]:
    """The user's stored processes, without their process graphs."""
    processes, links = paginate(request, udps.list(user.user_id), "/process_graphs")
    return {"processes": processes, "links": links}


@router.get("/process_graphs/{process_graph_id}", operation_id="describe-custom-process")
def describe_custom_process(process_graph_id: str, user: ActiveUser,
                            udps: UdpStoreDep) -> dict[str, Any]:
    """The full stored process, with its process graph."""
    return udps.get(user.user_id, process_graph_id)


@router.put("/process_graphs/{process_graph_id}", operation_id="store-custom-process",
            openapi_extra={"requestBody": _PROCESS_BODY},
            response_class=Response, responses={200: {"description": "Stored."}})
def store_custom_process(process_graph_id: str, user: ActiveUser, body: JsonObjectBody,
                         udps: UdpStoreDep, registry: RegistryDep) -> Response:
    """Create or fully replace a process; its graph is checked for structure and recursion."""
    udps.store(user.user_id, process_graph_id, body, lambda pid: pid in registry)
    return Response(status_code=200)


@router.delete("/process_graphs/{process_graph_id}", operation_id="delete-custom-process",
               status_code=204, response_class=Response)
def delete_custom_process(process_graph_id: str, user: ActiveUser,
                          udps: UdpStoreDep) -> Response:
    udps.delete(user.user_id, process_graph_id)
    return Response(status_code=204)
