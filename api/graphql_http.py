"""GraphQL over HTTP at /graphql: the answer's media type and status (the GraphQL-over-HTTP
spec's `application/graphql-response+json`), what the request log learns about each
operation, and the GraphiQL page, served from the package's own files."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from functools import cache
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Scope
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
GRAPHIQL_PAGE = Path(__file__).parent / "static" / "graphiql" / "graphiql.html"
# The GraphiQL page loads only this server's files; the policy makes the browser hold it to that.
GRAPHIQL_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self' ws: wss:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
NOTE = "jobledger.request"  # the ASGI scope's key for what the request log is told


def answer_media_type(accept: str | None) -> str:
    """The media type of a GraphQL answer to a request with this Accept header:
    `application/graphql-response+json` when the header names it at least as high as
    `application/json`; else `application/json`, which is also the answer to `*/*`, to no
    Accept header and to one naming neither (clients from before the spec)."""
    weights: dict[str, float] = {}
    for part in (accept or "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        media = media.lower()
        weights[media] = max(weights.get(media, 0.0), weight)
    preferred = weights.get(GRAPHQL_RESPONSE, 0.0)
    return GRAPHQL_RESPONSE if preferred > 0 and preferred >= weights.get(JSON, 0.0) else JSON


def is_request_error(result: ExecutionResult) -> bool:
    """Whether the operation never ran: its document did not parse or validate, or its
    variables could not be coerced. Such errors have no path; errors raised while running
    a field have one, and leave `data` (perhaps null) in the answer."""
    errors = result.errors or []
    return result.data is None and bool(errors) and all(error.path is None for error in errors)


def note(scope: Scope) -> MutableMapping[str, Any]:
    """What the request log is told about this request (operation, error codes, caller),
    kept in its ASGI scope, which every layer of the app shares."""
    noted: MutableMapping[str, Any] = scope.setdefault(NOTE, {})
    return noted


def note_answer(request: Request, answer: dict[str, Any], request_error: bool) -> None:
    """Notes the answer's error codes, and whether the operation was refused before it ran;
    an answer in `application/graphql-response+json` to such a request has no `data` entry."""
    noted = note(request.scope)
    codes = [str((error.get("extensions") or {}).get("code")) for error in answer.get("errors") or ()]
    noted["codes"] = list(dict.fromkeys(codes))
    noted["request_error"] = request_error
    if request_error and noted.get("media_type") == GRAPHQL_RESPONSE:
        answer.pop("data", None)


def shaped(response: Response, scope: Scope) -> Response:
    """A GraphQL answer in the media type the client asked for, with the spec's status:
    400 for an operation refused before it ran when the answer is graphql-response+json
    (an `application/json` answer stays 200, as clients from before the spec expect)."""
    noted = note(scope)
    if noted.get("media_type") != GRAPHQL_RESPONSE or response.media_type != JSON:
        return response
    response.media_type = GRAPHQL_RESPONSE
    response.headers["content-type"] = GRAPHQL_RESPONSE
    if noted.get("request_error") and response.status_code == 200:
        response.status_code = 400
    return response


class OperationNote(SchemaExtension):
    """Tells the request log the operation's name: the one the request gave, else the
    document's own (`query Jobs { ... }`), once the document is parsed."""

    def on_operation(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        request = context.get("request") if isinstance(context, dict) else None
        if isinstance(request, Request):  # a websocket's operations are not HTTP requests
            note(request.scope)["operation"] = self.execution_context.operation_name


@cache
def graphiql_page() -> str:
    return GRAPHIQL_PAGE.read_text(encoding="utf-8")


def graphiql_response() -> HTMLResponse:
    """The GraphiQL page: its scripts and styles are the package's (api/static/graphiql/)."""
    headers = {"Cache-Control": "no-cache", "Content-Security-Policy": GRAPHIQL_POLICY}
    return HTMLResponse(graphiql_page(), headers=headers)
