"""The Starlette application, built from a Settings object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.settings import Settings
from domain.ledger import Ledger
from projections.service import ReadSide

log = logging.getLogger("jobledger")
READY_LAG = 1000  # events the read models may trail the store by and still be ready


def create_app(settings: Settings) -> Starlette:
    """The service: opens the store (creating the default queue on first start), runs the
    projection runner and the clock in-process, and serves the API."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ledger = await asyncio.to_thread(Ledger, settings.database_url)
        read_side = ReadSide(ledger, settings.finished_grace_s, settings.archive_after_s)
        await asyncio.to_thread(read_side.start)
        await read_side.start_async()
        app.state.ledger, app.state.read_side = ledger, read_side
        log.info("store %s open at position %d", ledger.store.display, ledger.position())
        try:
            yield
        finally:
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

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)], lifespan=lifespan)
