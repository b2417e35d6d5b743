"""Responses shared by the routes."""

from __future__ import annotations

import json

from fastapi.responses import FileResponse
from starlette.types import Message, Receive, Scope, Send

from terracube import errors


class RangeNotSatisfiable(errors.OpenEOError):
    """The Range header asks for bytes the file does not have."""

    code = "RangeNotSatisfiable"
    status = 416


class FileDownload(FileResponse):
    """A file sent in 4 MiB pieces: results run to gigabytes, and Starlette's 64 KiB default
    makes the event loop spend its time on sends (2.4 GB: 37,000 of them).

    Starlette answers a malformed or unsatisfiable Range header with plain text; those answers
    are turned into openEO error objects here, like every other error of the API."""

    chunk_size = 4 * 2**20

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: Message | None = None

        async def openeo_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start" and message["status"] in (400, 416):
                held = message  # Starlette's plain-text Range error: replaced below
                return
            if held is not None and message["type"] == "http.response.body":
                await _send_range_error(send, held, message.get("body", b""))
                held = None
                return
            await send(message)

        await super().__call__(scope, receive, openeo_send)


async def _send_range_error(send: Send, start: Message, text: bytes) -> None:
    status = start["status"]
    detail = text.decode("utf-8", "replace").strip()
    error: errors.OpenEOError
    if status == 416:
        error = RangeNotSatisfiable("The Range header asks for bytes beyond the end of the "
                                    "file.")
    else:
        error = errors.BadRequest(f"The Range header is invalid{': ' + detail if detail else ''}"
                                  " (use e.g. 'bytes=0-1023').")
    body = json.dumps(error.to_json()).encode()
    keep = [(k, v) for k, v in start.get("headers", [])
            if k.lower() not in (b"content-type", b"content-length")]
    await send({"type": "http.response.start", "status": status,
                "headers": keep + [(b"content-type", b"application/json"),
                                   (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
