"""Every failure leaves the API as an openEO error object: {id, code, message, links}."""

from __future__ import annotations

import http
import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terracube import errors

log = logging.getLogger(__name__)


# Proprietary codes for HTTP-level failures that errors.json has no code for (the API spec
# allows them: "Responding with openEO error codes 400 and 500 SHOULD be avoided in favor of
# any more specific standardized or proprietary openEO error code"). BadRequest lives in
# terracube.errors, as the request rules of jobs/ raise it too.
BadRequest = errors.BadRequest


class MethodNotAllowed(errors.OpenEOError):
    """The endpoint exists, but not with this HTTP method."""

    code = "MethodNotAllowed"
    status = 405


def error_response(exc: errors.OpenEOError, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = getattr(exc, "headers", None) or {}
    return JSONResponse(exc.to_json(), status_code=exc.status, headers={**extra, **(headers or {})})


async def _openeo_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.OpenEOError)
    if exc.status >= 500:
        log.error("%s [%s]: %s", exc.code, exc.id, exc.message, exc_info=exc)
    else:
        log.info("%s [%s]: %s", exc.code, exc.id, exc.message)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = exc.errors()
    # "HTTP status code 404 SHOULD be used if the value of a path parameter is invalid."
    if problems and all(p.get("loc", ("",))[0] == "path" for p in problems):
        return error_response(errors.NotFound(
            "; ".join(f"{_where(p)}: {p.get('msg')}" for p in problems)))
    if any(p.get("type") == "json_invalid" for p in problems):
        return error_response(BadRequest("The request body is not valid JSON."))
    return error_response(BadRequest(
        "The request is invalid: " + "; ".join(f"{_where(p)}: {p.get('msg')}" for p in problems)))


def _where(problem: dict) -> str:
    return ".".join(str(part) for part in problem.get("loc", ()))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    status = exc.status_code
    if status == 404 and request.url.path.rstrip("/").endswith("/credentials/oidc"):
        # The openeo client's authenticate_oidc() (CDSE users' first line) asks here: say
        # what to use instead of a bare "no endpoint".
        error: errors.OpenEOError = errors.NotFound(
            "This back-end offers no OpenID Connect sign-in (its administrator has configured "
            "no provider); sign in with your user name and password: "
            "connection.authenticate_basic(username, password).")
    elif status == 404:
        error = errors.NotFound(
            f"There is no endpoint {request.url.path}; GET /openeo/1.2/ lists the endpoints.")
    elif status == 405:
        allowed = headers.get("Allow") or headers.get("allow") or ""
        error = MethodNotAllowed(
            f"{request.url.path} does not support {request.method}"
            + (f"; allowed: {allowed}." if allowed else "."))
    elif status == 401:
        error = errors.AuthenticationRequired(str(exc.detail))
    else:
        error = errors.OpenEOError(str(exc.detail))
        error.code = _code_for_status(status)
        error.status = status
    return error_response(error, headers)


def _code_for_status(status: int) -> str:
    try:
        return "".join(http.HTTPStatus(status).phrase.title().split()).replace("-", "")
    except ValueError:
        return "Internal" if status >= 500 else "BadRequest"


class InternalErrorMiddleware:
    """Turns exceptions nobody handled into a logged 500 Internal openEO error.

    Sits inside the CORS middleware so that even these responses carry the CORS headers.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            error = errors.Internal("Internal server error.")
            error.args = (f"Internal server error; the server log has the details under id "
                          f"{error.id}.",)
            log.error("Unhandled exception [%s] on %s %s", error.id, scope.get("method"),
                      scope.get("path"), exc_info=exc)
            if tracked.started:  # too late for an error response; the connection is just dropped
                raise
            await send_error(send, error)


class TrackedSend:
    """An ASGI `send` that remembers whether the response has started (after that, an error
    can no longer become a response of its own)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


async def send_error(send: Send, error: errors.OpenEOError,
                     headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Answer with `error` as openEO JSON from ASGI middleware (below FastAPI's handlers)."""
    body = json.dumps(error.to_json()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.OpenEOError, _openeo_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_middleware(InternalErrorMiddleware)
