"""The user workspace: GET /files, GET/PUT/DELETE /files/{path}.

Uploads are streamed to disk as they arrive (never held in memory) under a reservation of the
user's quota; see terracube.workspace.files. An upload that stalls (no bytes for
TERRACUBE_UPLOAD_IDLE_TIMEOUT_SECONDS) is ended with 408 and its reservation released.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from terracube import errors
from terracube.api.deps import SettingsDep, UserWorkspace, paginate
from terracube.api.responses import FileDownload
from terracube.workspace.files import Upload

log = logging.getLogger(__name__)

router = APIRouter(tags=["File Storage"])

# Bytes collected from the request before one write to disk (in a worker thread).
WRITE_BUFFER_BYTES = 1024 * 1024
# After a refused upload, up to this much of the rest of the body is still read (and thrown
# away) so that the client, still sending, can read the error instead of a reset connection.
DRAIN_LIMIT_BYTES = 256 * 1024 * 1024

_UPLOAD_BODY = {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}


@router.get("/files", operation_id="list-files")
def list_files(request: Request, workspace: UserWorkspace) -> dict[str, Any]:
    files = [f.to_json() for f in workspace.list_files()]
    page, links = paginate(request, files, "/files")
    return {"files": page, "links": links}


@router.get("/files/{path:path}", operation_id="download-file", response_class=FileResponse,
            responses={200: {"description": "The file.",
                             "content": {"application/octet-stream": {}}}})
def download_file(path: str, workspace: UserWorkspace) -> FileResponse:
    target, st = workspace.file_to_read(path)
    return FileDownload(target, stat_result=st, media_type="application/octet-stream",
                        filename=target.name)


@router.put("/files/{path:path}", operation_id="upload-file",
            openapi_extra={"requestBody": _UPLOAD_BODY})
async def upload_file(path: str, request: Request, workspace: UserWorkspace,
                      settings: SettingsDep) -> dict[str, Any]:
    """Store the request body as the file `path` (created or replaced)."""
    size_hint = _content_length(request)
    idle = settings.upload_idle_timeout_seconds
    try:
        upload = await run_in_threadpool(workspace.begin_upload, path, size_hint)
    except errors.StorageQuotaExceeded:
        await _drain(request, size_hint, idle)
        raise
    try:
        await _receive(request, upload, idle)
        info = await run_in_threadpool(upload.commit)
    except errors.StorageQuotaExceeded:
        await run_in_threadpool(upload.abort)
        await _drain(request, size_hint, idle)
        raise
    except BaseException:  # also ClientDisconnect and cancellation: no partial file stays
        await run_in_threadpool(upload.abort)
        raise
    return info.to_json()


@router.delete("/files/{path:path}", operation_id="delete-file", status_code=204,
               response_class=Response)
def delete_file(path: str, workspace: UserWorkspace) -> Response:
    workspace.delete(path)
    return Response(status_code=204)


async def _body(request: Request, idle: float) -> AsyncIterator[bytes]:
    """The request body as it arrives; RequestTimeout when no bytes come for `idle` seconds
    (a stalled client must not hold a connection and a quota reservation for ever)."""
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), timeout=idle)
        except TimeoutError:
            raise errors.RequestTimeout(
                f"The upload stalled: no data arrived for {idle:g} s, so it was ended and "
                "nothing was stored. Send the file again.") from None
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if chunk := message.get("body", b""):
            yield chunk
        if not message.get("more_body", False):
            return


async def _receive(request: Request, upload: Upload, idle: float) -> None:
    buffer = bytearray()
    async for chunk in _body(request, idle):
        buffer += chunk
        if len(buffer) >= WRITE_BUFFER_BYTES:
            await run_in_threadpool(upload.write, bytes(buffer))
            buffer.clear()
    if buffer:
        await run_in_threadpool(upload.write, bytes(buffer))


async def _drain(request: Request, size_hint: int | None, idle: float) -> None:
    if size_hint is not None and size_hint > DRAIN_LIMIT_BYTES:
        return  # not worth it: the connection is closed after the response instead
    drained = 0
    try:
        async for chunk in _body(request, idle):
            drained += len(chunk)
            if drained > DRAIN_LIMIT_BYTES:
                return
    except (ClientDisconnect, errors.RequestTimeout, RuntimeError):  # gone or stalled
        return


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None
