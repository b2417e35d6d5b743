"""User-defined processes: GET /process_graphs, GET/PUT/DELETE /process_graphs/{id}."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from terracube.api.deps import (
    ActiveUser,
    JsonObjectBody,
    RegistryDep,
    UdpStoreDep,
    api_url,
    paginate,
)

router = APIRouter(tags=["User-Defined Processes"])

_PROCESS_BODY = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["process_graph"],
    "properties": {"process_graph": {"type": "object"}, "id": {"type": "string"},
                   "summary": {"type": "string"}, "description": {"type": "string"},
                   "parameters": {"type": "array", "items": {"type": "object"}},
                   "returns": {"type": "object"},
                   "public": {"type": "boolean", "description":
                              "Share the process: it gets a `canonical` URL that is served "
                              "without authentication and can be used as a node's namespace."}
                   }}}}}


def canonical_url(request: Request, user_id: str, process_id: str) -> str:
    """Where a public process is served to anyone (as CDSE: /processes/u:<user>/<id>)."""
    return api_url(request, f"/processes/u:{user_id}/{process_id}")


def with_canonical_link(request: Request, user_id: str, process: dict[str, Any]) -> dict:
    if process.get("public") is not True:
        return process
    href = canonical_url(request, user_id, process["id"])
    links = [link for link in process.get("links") or [] if link.get("rel") != "canonical"]
    links.append({"rel": "canonical", "href": href, "type": "application/json",
                  "title": "Public URL of this process (usable as a process namespace)"})
    return {**process, "links": links}


@router.get("/process_graphs", operation_id="list-custom-processes")
def list_custom_processes(request: Request, user: ActiveUser,
                          udps: UdpStoreDep) -> dict[str, Any]:
    """The user's stored processes, without their process graphs."""
    processes, links = paginate(request, udps.list(user.user_id), "/process_graphs")
    return {"processes": processes, "links": links}


@router.get("/process_graphs/{process_graph_id}", operation_id="describe-custom-process")
def describe_custom_process(request: Request, process_graph_id: str, user: ActiveUser,
                            udps: UdpStoreDep) -> dict[str, Any]:
    """The full stored process, with its process graph (and its `canonical` link if public)."""
    return with_canonical_link(request, user.user_id, udps.get(user.user_id, process_graph_id))


@router.get("/processes/u:{user_id}", include_in_schema=False)
def list_public_processes(request: Request, user_id: str, udps: UdpStoreDep) -> dict[str, Any]:
    """The processes a user shared (`public: true`), without authentication: what the
    client's `list_processes(namespace="u:<user>")` and `describe_process(id, namespace=...)`
    read (as on CDSE). Full descriptions, as the client's describe_process shows them."""
    shared = [with_canonical_link(request, user_id, process)
              for process in udps.all(user_id).values() if process.get("public") is True]
    return {"processes": shared, "links": []}


@router.get("/processes/u:{user_id}/{process_graph_id}", include_in_schema=False)
def describe_public_process(request: Request, user_id: str, process_graph_id: str,
                            udps: UdpStoreDep) -> dict[str, Any]:
    """A process its owner stored with `public: true`; no authentication needed (the
    canonical URL to share, and to use as a node's `namespace`)."""
    return with_canonical_link(request, user_id, udps.public(user_id, process_graph_id))


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
