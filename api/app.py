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

log = logging.getLogger("jobledger")


def create_app(settings: Settings) -> Starlette:
    """The service: opens the store (creating the default queue on first start)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ledger = await asyncio.to_thread(Ledger, settings.database_url)
        app.state.ledger = ledger
        log.info("store %s open at position %d", ledger.store.display, ledger.position())
        try:
            yield
        finally:
            ledger.close()

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> JSONResponse:
        ledger: Ledger = request.app.state.ledger
        try:
            position = await asyncio.to_thread(ledger.position)
        except Exception as exc:  # the store is unreachable: say so, do not crash
            log.warning("store not reachable: %s", exc)
            return JSONResponse({"status": "unavailable", "reason": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "position": position})

    return Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz)],
        lifespan=lifespan,
    )
