"""The HTTP edge: every answer is JSON with a code, request bodies have a limit, and
requests uvicorn cannot parse are answered in JSON too."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import code_for_status, error_body, new_request_id
from api.graphql_http import note
from api.logs import current_request_id

log = logging.getLogger("jobledger")
requests_log = logging.getLogger("jobledger.http")

URL_LIMIT = 65535  # bytes: uvicorn's HTTP parser refuses longer URLs before the app sees them


def error_response(
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
    media_type: str = "application/json",
    **extensions: Any,
) -> JSONResponse:
    """An HTTP error answer: JSON shaped like a GraphQL answer, with the contract's code. In
    `application/graphql-response+json` (a client that asked for it) it has no `data` entry,
    as the GraphQL-over-HTTP spec says of requests that never ran."""
    body = error_body(message, code or code_for_status(status), **extensions)
    if media_type != "application/json":
        del body["data"]
    return JSONResponse(body, status_code=status, headers=headers, media_type=media_type)


# -- HTTP ----------------------------------------------------------------------------------------


def json_kind(value: Any) -> str:
    return "null" if value is None else {str: "a string", bool: "a boolean"}.get(type(value), "a number")


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, limit: int, size: int | None = None) -> None:
        size_said = f"{size:,} bytes, " if size is not None else ""
        super().__init__(
            413,
            f"the request body is {size_said}over the limit of {limit:,} bytes (JOBLEDGER_MAX_BODY_BYTES): send "
            "less per request, e.g. add tasks in several calls and keep large data out of metadata and paths",
        )


class BodyLimit:
    """Refuses a request over `limit` bytes before reading it whole: at once when its
    Content-Length says so, else (chunked) as soon as the bytes received pass the limit. A GET's
    query string has the same limit (and uvicorn's own of 64 KiB for the whole URL)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.check_head(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counting, send)

    def check_head(self, scope: Scope) -> Response | None:
        query = scope.get("query_string", b"")
        if len(query) > self.limit:
            return error_response(
                414,
                f"the query string is {len(query):,} bytes; the limit is {self.limit:,}: send the request as a POST",
                "VALIDATION",
            )
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is None:
            return None
        if not declared.isdigit():
            return error_response(400, "Content-Length must be a whole number of bytes", "VALIDATION")
        if int(declared) > self.limit:
            exc = BodyTooLarge(self.limit, int(declared))
            return error_response(413, exc.detail, "VALIDATION")
        return None


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path, method not allowed, body too large) as coded JSON."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    message = exc.detail
    if status == 404:
        message = f"there is nothing at {request.url.path}: the API is at /graphql, the dashboard at /"
    elif status == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed at {request.url.path}; allowed: {allowed}"
    return error_response(status, message, headers=exc.headers)


class RequestLog:
    """One line per HTTP request: method, path, GraphQL operation, status, error code, time,
    caller and request id, also as the record's `request` fields (JSON logs: api.logs). An
    unexpected exception is logged here once, with the request id, and answered 500 in JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, answered = time.perf_counter(), 500, False
        request_id = new_request_id()
        noted = note(scope)  # filled in by the GraphQL view: operation, error codes, caller
        serving = current_request_id.set(request_id)

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            log.error("internal error (request id %s)", request_id, exc_info=exc)
            noted["codes"] = ["INTERNAL"]
            if not answered:  # else the client sees the connection end
                message = f"internal error; the service log has the details under request id {request_id}"
                answer = error_response(500, message, "INTERNAL", requestId=request_id)
                with contextlib.suppress(Exception):
                    await answer(scope, receive, sending)
        finally:
            fields = request_fields(scope, noted, status, time.perf_counter() - started, request_id)
            requests_log.info(
                "%s %s %d %.1f ms op=%s code=%s user=%s id=%s",
                fields["method"],
                fields["path"],
                fields["status"],
                fields["duration_ms"],
                fields["operation"] or "-",
                fields["code"] or "-",
                fields["user"] or "-",
                request_id,
                extra={"request": fields},
            )
            current_request_id.reset(serving)


def request_fields(
    scope: Scope, noted: Mapping[str, Any], status: int, seconds: float, request_id: str
) -> dict[str, Any]:
    """A request's line as fields: its error codes are the GraphQL answer's (comma-separated),
    else the code of an HTTP error status; the caller is who the request authenticated as, else
    (authentication off) the X-Jobledger-User header."""
    codes = noted.get("codes") or ([code_for_status(status)] if status >= 400 else [])
    user = noted.get("user")
    if user is None:
        header = dict(scope.get("headers") or []).get(b"x-jobledger-user")
        user = header.decode(errors="replace") if header else None
    return {
        "request_id": request_id,
        "method": scope["method"],
        "path": scope["path"],
        "operation": noted.get("operation"),
        "status": status,
        "code": ",".join(codes) or None,
        "duration_ms": round(seconds * 1000, 1),
        "user": user,
    }


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # no httptools: uvicorn's h11 protocol, whose rare refusals stay plain text
    HttpToolsProtocol = None


if HttpToolsProtocol is not None:

    class JsonRefusals(HttpToolsProtocol):  # type: ignore[misc, valid-type]
        """uvicorn's httptools protocol, answering a request it cannot parse (a URL over
        64 KiB, malformed headers) with coded JSON rather than plain text. A module-level
        class, so that `serve --workers N` can hand it to the processes it starts."""

        def send_400_response(self, msg: str) -> None:
            too_long = len(getattr(self, "url", b"")) > URL_LIMIT
            status = HTTPStatus.REQUEST_URI_TOO_LONG if too_long else HTTPStatus.BAD_REQUEST
            if too_long:
                message = f"the URL is over {URL_LIMIT:,} bytes: send the request as a POST with a JSON body"
            else:
                message = f"the request could not be read as HTTP/1.1 ({msg.rstrip('.')})"
            body = json.dumps(error_body(message, "VALIDATION")).encode()
            head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body)]
            self.transport.write(b"".join(head) + b"connection: close\r\n\r\n" + body)
            self.transport.close()


def http_protocol() -> type[asyncio.Protocol] | str:
    """The HTTP protocol for uvicorn: `JsonRefusals` where httptools is installed."""
    return JsonRefusals if HttpToolsProtocol is not None else "auto"
