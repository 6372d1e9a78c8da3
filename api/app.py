"""The Starlette application, built from a Settings object."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from api.auth import Authenticator
from api.context import Services, new_loaders
from api.errors import with_codes
from api.graphql_http import (
    OperationNote,
    answer_media_type,
    graphiql_response,
    is_request_error,
    note,
    note_answer,
    shaped,
)
from api.http_edge import BodyLimit, RequestLog, error_response, http_error, json_kind
from api.metrics import count_appended_events, metrics_route
from api.schema import build_schema
from api.sessions import public_health, sign_in, sign_out, welcome_first_admin
from api.settings import Settings
from api.subscriptions import Replays, SharedReads, Slots
from api.websockets import LegacyWSHandler, LimitedWebSocketAdapter, TransportWSHandler
from domain.ledger import Ledger
from projections.service import ReadSide

log = logging.getLogger("jobledger")

STATIC = Path(__file__).parent / "static"  # the web dashboard, served at /
READY_LAG = 1000  # events the read models may trail the store by and still be ready


def _address(connection: Request | WebSocket) -> str:
    return connection.client.host if connection.client else "unknown"


class LedgerGraphQL(GraphQL):  # type: ignore[type-arg]
    """Strawberry's ASGI view with jobledger's per-request context, strict request parsing
    (a body is UTF-8 JSON whose top level is an object), answers as the GraphQL-over-HTTP
    spec says (api.graphql_http), GraphiQL from the package, and the websocket rules below."""

    def __init__(self, app: Starlette, settings: Settings) -> None:
        schema = build_schema()
        schema.extensions = (*schema.extensions, OperationNote)  # the operation's name, for the log
        super().__init__(
            schema,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            keep_alive=True,
            keep_alive_interval=15,
            max_subscriptions_per_connection=None,  # Slots enforces it, with a code
        )
        self.app = app
        self.max_message_bytes = settings.max_ws_message_bytes
        self.slots = Slots(settings.max_subscriptions_per_connection, settings.max_subscriptions)
        self.graphql_transport_ws_handler_class = TransportWSHandler
        self.graphql_ws_handler_class = LegacyWSHandler
        self.websocket_adapter_class = LimitedWebSocketAdapter  # type: ignore[assignment]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        media_type = note(scope)["media_type"] = answer_media_type(request.headers.get("accept"))
        try:
            response = shaped(await self.run(request), scope)
        except HTTPException as exc:  # a body that is not a GraphQL request at all
            response = error_response(exc.status_code, exc.reason, media_type=media_type)
        await response(scope, receive, send)

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL, from the package's own files: it works with no internet access."""
        return graphiql_response()

    async def parse_http_body(self, request: Any) -> Any:
        if request.method == "POST":
            media_type = (request.content_type or "").split(";", 1)[0].strip().lower()
            if media_type != "application/json":
                raise HTTPException(
                    415,
                    f"a GraphQL request is sent as Content-Type: application/json, not {media_type or 'nothing'}"
                    " (or as a GET with ?query=...)",
                )
        return await super().parse_http_body(request)

    def parse_json(self, data: str | bytes) -> Any:
        """A request body: UTF-8 JSON whose top level is one operation, an object."""
        value = self._json(data, "the request body")
        if isinstance(value, list):
            raise HTTPException(400, "the request body is a JSON list: send one operation at a time, as an object")
        if not isinstance(value, dict):
            raise HTTPException(
                400,
                f'the request body must be a JSON object such as {{"query": "{{ queues {{ totalCount }} }}"}},'
                f" not {json_kind(value)}",
            )
        return value

    def parse_query_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A GET's parameters; `variables` and `extensions` are JSON (their shape is checked later)."""
        parsed = dict(params)
        for name in ("variables", "extensions"):
            if parsed.get(name):
                parsed[name] = self._json(parsed[name], f"the `{name}` parameter")
        return parsed

    @staticmethod
    def _json(data: str | bytes, what: str) -> Any:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise HTTPException(
                    400, f"{what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
                ) from None
        try:
            return json.loads(data)
        except RecursionError:
            raise HTTPException(400, f"{what} nests JSON arrays or objects too deeply") from None
        except ValueError as exc:  # not JSON, or an integer past Python's 4,300 digits
            raise HTTPException(400, f"{what} is not valid JSON: {exc}") from None

    async def on_ws_connect(self, context: dict[str, Any]) -> Any:
        """Who the websocket's caller is: its connection_init payload's token, else the
        upgrade request's Authorization header or session cookie. A refused token is kept
        and answered as UNAUTHENTICATED by every operation, with its code."""
        socket: WebSocket = context["request"]
        params = context.get("connection_params")
        authenticator: Authenticator = self.app.state.authenticator
        context["caller"] = await authenticator.caller(
            socket.headers, socket.cookies, params if isinstance(params, dict) else None, _address(socket)
        )
        return await super().on_ws_connect(context)

    async def process_result(self, request: Request, result: Any) -> dict[str, Any]:
        """Every error leaves with a code: documents that fail to parse get VALIDATION."""
        answer: dict[str, Any] = await super().process_result(request, result)
        with_codes(answer.get("errors") or ())
        note_answer(request, answer, is_request_error(result))
        return answer

    async def get_context(self, request: Request | WebSocket, response: Response | None = None) -> dict[str, Any]:
        state = self.app.state
        caller = None  # a websocket's: when its connection_init arrives (on_ws_connect)
        if isinstance(request, Request):
            caller = await state.authenticator.caller(request.headers, request.cookies, None, _address(request))
            note(request.scope)["user"] = caller.actor
        return {
            "caller": caller,
            "request": request,
            "response": response,
            "services": state.services,
            "read": state.read_side.models,
            "shared": state.shared,
            "replays": state.replays,
            "loaders": new_loaders(state.read_side.models),
        }


def create_app(settings: Settings) -> Starlette:
    """The service: opens the store (creating the default queue on first start), runs the
    projection runner and the clock in-process, and serves the API at /graphql."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ledger = await asyncio.to_thread(Ledger, settings.database_url)
        count_appended_events(ledger)  # for /metrics
        read_side = ReadSide(ledger, settings.finished_grace_s, settings.archive_after_s)
        await asyncio.to_thread(read_side.start)
        await read_side.start_async()
        executor = ThreadPoolExecutor(max_workers=settings.command_threads, thread_name_prefix="command")
        app.state.read_side = read_side
        app.state.services = Services(ledger, read_side, executor, wait_timeout=settings.read_wait_s)
        app.state.shared = SharedReads(read_side.models)
        app.state.replays = Replays(app.state.services)
        app.state.authenticator = Authenticator(ledger.identity, settings.auth, app.state.services.call)
        log.info("store %s open at position %d", ledger.store.display, ledger.position())
        if settings.auth:
            await asyncio.to_thread(welcome_first_admin, ledger, settings)
        else:
            log.warning(
                "authentication is OFF (JOBLEDGER_AUTH=off): anyone who reaches %s:%d acts as anyone "
                "(the X-Jobledger-User header names the caller)",
                settings.host,
                settings.port,
            )
        try:
            yield
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
            await read_side.stop_async()
            await asyncio.to_thread(read_side.stop)
            ledger.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        """200 when the read models are complete and close behind the store; 503 when they
        are catching up, stalled on an event (which, and why), degraded by events set aside
        that nobody acknowledged, or the store cannot be read."""
        read_side: ReadSide = request.app.state.read_side
        try:
            ready, body = await asyncio.to_thread(read_side.health, READY_LAG)
        except Exception as exc:  # the store is unreachable: say so (not where it is), do not crash
            log.warning("readyz: the store could not be read: %s", exc)
            return JSONResponse({"status": "not ready", "reason": "store_unreachable"}, status_code=503)
        return JSONResponse(public_health(ready, body), status_code=200 if ready else 503)

    async def dashboard(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app = Starlette(lifespan=lifespan, exception_handlers={StarletteHTTPException: http_error})
    graphql = LedgerGraphQL(app, settings)
    app.router.routes.extend(
        [
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            metrics_route(settings),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/", dashboard),
            Route("/signin", sign_in, methods=["GET", "POST"]),
            Route("/signout", sign_out, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestLog)  # outermost: it logs and answers whatever fails inside
    return app
