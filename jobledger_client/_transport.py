"""The wire: the service's URLs, the settings both clients share, one subscription on its
own websocket (gql's graphql-transport-ws transport), and the event loop thread the
blocking client runs subscriptions on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from gql import Client as GqlClient
from gql.graphql_request import GraphQLRequest
from gql.transport.exceptions import TransportError, TransportProtocolError, TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from jobledger_client import documents as doc
from jobledger_client.credentials import find_token, missing_token_advice
from jobledger_client.errors import JobledgerError, OutcomeUnknown, Unauthenticated, Unavailable, error_from

DEFAULT_URL = "http://127.0.0.1:8000/graphql"
USER_HEADER = "X-Jobledger-User"
AUTHORIZATION = "Authorization"


def graphql_url(url: str | None) -> str:
    """The /graphql URL: given, or $JOBLEDGER_URL, or the local default; a bare host gets /graphql."""
    url = url or os.environ.get("JOBLEDGER_URL") or DEFAULT_URL
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        parts = parts._replace(path="/graphql")
    return urlunsplit(parts)


def ws_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    return urlunsplit(parts._replace(scheme=scheme))


# graphql-transport-ws closes with these when the server refuses the connection_init.
REFUSED_CLOSE_CODES = {4401: "Unauthorized", 4403: "Forbidden"}


def close_frame(exc: BaseException) -> tuple[int, str] | None:
    """The code and reason of the close frame the server sent, when `exc` came of one."""
    seen: BaseException | None = exc
    for _ in range(10):  # a chain of causes, not a loop
        if seen is None:
            return None
        frame = getattr(seen, "rcvd", None)
        if isinstance(getattr(frame, "code", None), int):
            return frame.code, str(getattr(frame, "reason", "") or "")  # type: ignore[union-attr]
        seen = seen.__cause__ or seen.__context__
    return None


def stream_failure(url: str, exc: BaseException) -> JobledgerError:
    """A websocket that failed: Unauthenticated when the server refused its connection_init,
    else Unavailable."""
    closed = close_frame(exc)
    if closed and closed[0] in REFUSED_CLOSE_CODES:
        code, reason = closed
        said = reason or REFUSED_CLOSE_CODES[code]
        return Unauthenticated(f"the server refused the websocket ({code} {said}) ({missing_token_advice()})")
    return transport_failure(url, exc)


# Answers a proxy or a restarting service gives while it cannot serve: worth asking again.
RETRIED_STATUSES = frozenset({502, 503, 504})
# Failures before the request left: nothing reached the service.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures of a request that may have left: the service may have carried it out.
MAYBE_SENT = (httpx.TransportError, TimeoutError)
# Failures that sending again will not mend (a URL of another scheme, a bad proxy).
PERMANENT = (httpx.UnsupportedProtocol, httpx.ProxyError, httpx.LocalProtocolError, httpx.InvalidURL)


def http_status(status: int) -> str:
    """`404 Not Found`; the bare number for a status HTTP does not name."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def http_failure(url: str, status: int) -> str:
    """An HTTP answer that is not GraphQL, named by its status, and what it likely means."""
    said = f"HTTP {http_status(status)} from {url}"
    if status in RETRIED_STATUSES:
        return f"{said}: the service, or a proxy in front of it, cannot answer now"
    return f"{said}, not a GraphQL answer: is that the jobledger server's address (its /graphql)?"


def transport_failure(url: str, exc: BaseException) -> Unavailable:
    """What a request that got no GraphQL answer raises: Unavailable when it never left (or
    got an HTTP answer that is not GraphQL: named by its status, which `details` holds),
    OutcomeUnknown when it may have left. `details["retry"]` says whether sending it again
    may help."""
    status = getattr(exc, "code", None)
    if isinstance(status, int):
        details = {"url": url, "status": status, "retry": status in RETRIED_STATUSES}
        return Unavailable(http_failure(url, status), details=details)
    cause = exc.__cause__ if isinstance(exc, TransportError) and exc.__cause__ is not None else exc
    if isinstance(exc, TransportProtocolError):  # an answer, but not GraphQL (a web page, say)
        return Unavailable(
            f"the answer from {url} is not GraphQL ({first_line(exc)}): is that the jobledger server's address "
            "(its /graphql)?",
            details={"url": url, "retry": False},
        )
    if isinstance(cause, PERMANENT):
        return Unavailable(f"no GraphQL answer from {url}: {exc}", details={"url": url, "retry": False})
    if isinstance(cause, MAYBE_SENT) and not isinstance(cause, NOT_SENT):
        return OutcomeUnknown(
            f"no answer from {url} once the request had left ({cause.__class__.__name__}: {exc}): "
            "whether it was carried out is unknown",
            details={"url": url, "retry": True},
        )
    return Unavailable(f"no GraphQL answer from {url}: {exc}", details={"url": url, "retry": True})


def first_line(exc: BaseException, most: int = 120) -> str:
    """The start of an exception's message (gql's quote the whole page they were answered)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
    return text if len(text) <= most else text[: most - 1] + "…"


class Stream:
    """A subscription on its own websocket connection (gql's WebsocketsTransport)."""

    def __init__(self, settings: Settings, document: str, variables: dict[str, Any]) -> None:
        self.settings = settings
        self.request = GraphQLRequest(doc.parsed(document), variable_values=variables)
        self.client: GqlClient | None = None
        self.results: Any = None

    async def open(self) -> Stream:
        s = self.settings
        transport = WebsocketsTransport(
            url=s.ws_url,
            headers=s.headers,
            init_payload=s.init_payload,
            subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            connect_timeout=s.timeout,
            ack_timeout=s.timeout,
            close_timeout=5,
        )
        self.client = GqlClient(transport=transport, execute_timeout=None)
        try:
            session = await self.client.connect_async()
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, OSError, TimeoutError) as exc:
            raise stream_failure(s.ws_url, exc) from exc
        self.results = session.subscribe(self.request)
        return self

    async def next(self) -> dict[str, Any] | None:
        """The next result's data; None when the server ended the subscription."""
        try:
            return await self.results.__anext__()  # type: ignore[no-any-return]
        except StopAsyncIteration:
            return None
        except TransportQueryError as exc:
            raise error_from(exc.errors or [{"message": str(exc)}]) from None
        except (TransportError, OSError) as exc:
            raise stream_failure(self.settings.ws_url, exc) from exc

    async def close(self) -> None:
        if self.results is not None:
            with contextlib.suppress(Exception):
                await self.results.aclose()
        if self.client is not None and getattr(self.client, "session", None) is not None:
            with contextlib.suppress(Exception):
                await self.client.close_async()


class LoopThread:
    """An event loop in a daemon thread, for the blocking client's subscriptions."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="jobledger-client-ws", daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


class Settings:
    """What both clients send with every request: who they are and where to.

    A token (given, else $JOBLEDGER_TOKEN, else the token file: `credentials.find_token`)
    goes as `Authorization: Bearer <token>` on HTTP and under the same key in a websocket's
    connection_init; a user (given, else $JOBLEDGER_USER) as X-Jobledger-User, which only a
    server with JOBLEDGER_AUTH=off reads."""

    def __init__(
        self,
        url: str | None,
        user: str | None,
        timeout: float,
        headers: Mapping[str, str] | None,
        token: str | None = None,
    ) -> None:
        self.url = graphql_url(url)
        self.ws_url = ws_url(self.url)
        self.user = user if user is not None else os.environ.get("JOBLEDGER_USER") or None
        self.token = find_token(token)
        self.timeout = timeout
        self.headers: dict[str, str] = dict(headers or {})
        self.init_payload: dict[str, Any] = {}
        if self.token:
            self.headers[AUTHORIZATION] = self.init_payload[AUTHORIZATION] = f"Bearer {self.token}"
        if self.user:
            self.headers[USER_HEADER] = self.init_payload[USER_HEADER] = self.user
