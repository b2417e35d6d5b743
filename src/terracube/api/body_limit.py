"""A size limit for request bodies (TERRACUBE_MAX_REQUEST_BODY_BYTES): a body larger than the
limit is refused with 413 before it is held in memory. File uploads (PUT /files/...) are not
limited here: they are streamed to disk under the user's quota."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terracube import errors
from terracube.api.errors import TrackedSend, send_error
from terracube.api.proxy import route_path


class PayloadTooLarge(errors.OpenEOError):
    """The request body is larger than the server accepts."""

    code = "PayloadTooLarge"
    status = 413


class BodyLimitMiddleware:
    """Refuses bodies over `limit` bytes: by their Content-Length up front, and by counting
    what arrives for chunked bodies."""

    def __init__(self, app: ASGIApp, limit: int, unlimited_prefix: str) -> None:
        self.app = app
        self.limit = limit
        self.unlimited_prefix = unlimited_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"] == "PUT" and
                                       route_path(scope).startswith(self.unlimited_prefix)):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An openEO error: the app's handlers answer it (413) like any other.
                    raise self._error()
            return message

        tracked = TrackedSend(send)
        try:
            await self.app(scope, counting_receive, tracked)
        except PayloadTooLarge:
            if not tracked.started:
                await self._refuse(send)

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body is larger than {self.limit} bytes (setting "
            "TERRACUBE_MAX_REQUEST_BODY_BYTES); upload big files with PUT /files/{path} and "
            "refer to them from the process graph.")

    async def _refuse(self, send: Send) -> None:
        await send_error(send, self._error(), [(b"connection", b"close")])
