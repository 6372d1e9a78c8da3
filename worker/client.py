"""A small GraphQL-over-HTTP client for the worker, patient with a server that goes away."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger("jobledger.worker")


class ApiError(Exception):
    """The server answered with a GraphQL error."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


class Client:
    def __init__(self, url: str, worker: str, timeout: float = 30) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=timeout, headers={"X-Jobledger-User": worker})
        self.connected = True

    async def call(self, query: str, **variables: Any) -> dict[str, Any]:
        """Run one operation; waits (with backoff) while the server is unreachable."""
        delay = 0.5
        while True:
            try:
                response = await self.http.post(self.url, json={"query": query, "variables": variables})
                body = response.json()
            except (httpx.TransportError, ValueError) as exc:
                if self.connected:
                    log.warning("server unreachable (%s); retrying", exc.__class__.__name__)
                self.connected = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
                continue
            if not self.connected:
                log.warning("server reachable again")
                self.connected = True
            if body.get("errors"):
                error = body["errors"][0]
                raise ApiError(error.get("message", "error"), (error.get("extensions") or {}).get("code"))
            return body["data"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.http.aclose()
