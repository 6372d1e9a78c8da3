"""The Starlette application, built from a Settings object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from api.context import Services, new_loaders
from api.schema import build_schema
from api.settings import Settings
from api.subscriptions import SharedReads
from domain.ledger import Ledger
from projections.service import ReadSide

log = logging.getLogger("jobledger")
STATIC = Path(__file__).parent / "static"  # the web dashboard, served at /
READY_LAG = 1000  # events the read models may trail the store by and still be ready


class LedgerGraphQL(GraphQL):  # type: ignore[type-arg]
    """Strawberry's ASGI view with jobledger's per-request context."""

    def __init__(self, app: Starlette) -> None:
        super().__init__(
            build_schema(),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            keep_alive=True,
            keep_alive_interval=15,
        )
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:  # a body that is not a GraphQL request at all
            response = JSONResponse(
                {"data": None, "errors": [{"message": exc.reason, "extensions": {"code": "VALIDATION"}}]},
                status_code=exc.status_code,
            )
        await response(scope, receive, send)

    async def process_result(self, request: Request, result: Any) -> dict[str, Any]:
        """Every error leaves with a code: documents that fail to parse get VALIDATION."""
        answer: dict[str, Any] = await super().process_result(request, result)
        for error in answer.get("errors") or ():
            extensions = error.setdefault("extensions", {}) or {}
            extensions.setdefault("code", "VALIDATION")
            error["extensions"] = extensions
        return answer

    async def get_context(self, request: Request | WebSocket, response: Response | None = None) -> dict[str, Any]:
        state = self.app.state
        return {
            "request": request,
            "response": response,
            "services": state.services,
            "read": state.read_side.models,
            "shared": state.shared,
            "loaders": new_loaders(state.read_side.models),
        }


class RequestLog:
    """One readable line per HTTP request: method, path, status, time, caller, request id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        request_id = uuid.uuid4().hex[:12]

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            headers = dict(scope.get("headers") or [])
            user = headers.get(b"x-jobledger-user", b"-").decode(errors="replace")
            log.info(
                "%s %s %d %.1f ms user=%s id=%s",
                scope["method"],
                scope["path"],
                status,
                (time.perf_counter() - started) * 1000,
                user,
                request_id,
            )


def create_app(settings: Settings) -> Starlette:
    """The service: opens the store (creating the default queue on first start), runs the
    projection runner and the clock in-process, and serves the API at /graphql."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ledger = await asyncio.to_thread(Ledger, settings.database_url)
        read_side = ReadSide(ledger, settings.finished_grace_s, settings.archive_after_s)
        await asyncio.to_thread(read_side.start)
        await read_side.start_async()
        executor = ThreadPoolExecutor(max_workers=settings.command_threads, thread_name_prefix="command")
        app.state.read_side = read_side
        app.state.services = Services(ledger, read_side, executor)
        app.state.shared = SharedReads(read_side.models)
        log.info("store %s open at position %d", ledger.store.display, ledger.position())
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
        read_side: ReadSide = request.app.state.read_side
        try:
            status = await asyncio.to_thread(read_side.runner.status)
        except Exception as exc:  # the store is unreachable: say so, do not crash
            log.warning("store not reachable: %s", exc)
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        body = {"position": status.position, "head": status.head, "lag": status.lag}
        if status.lag > READY_LAG:
            return JSONResponse({"status": "catching up", **body}, status_code=503)
        return JSONResponse({"status": "ready", **body})

    async def dashboard(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app = Starlette(lifespan=lifespan)
    graphql = LedgerGraphQL(app)
    app.router.routes.extend(
        [
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/", dashboard),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.add_middleware(RequestLog)
    return app
