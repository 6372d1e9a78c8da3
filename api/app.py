"""The Starlette application, built from a Settings object, and its edge: every HTTP answer is
JSON with a code, request bodies and websocket messages have limits, and websocket protocol
errors close with the protocol's close code instead of a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path
from typing import Any

from cross_web import HTTPException
from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.http.exceptions import WebSocketDisconnected as StrawberryDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from api.context import Context, Services, new_loaders
from api.errors import code_for_status, coded, error_body, new_request_id, with_codes
from api.schema import build_schema
from api.settings import Settings
from api.subscriptions import PerEventExecution, Replays, SharedReads, Slots
from domain.errors import ValidationError
from domain.ledger import Ledger
from projections.service import ReadSide

log = logging.getLogger("jobledger")
STATIC = Path(__file__).parent / "static"  # the web dashboard, served at /
READY_LAG = 1000  # events the read models may trail the store by and still be ready
URL_LIMIT = 65535  # bytes: uvicorn's HTTP parser refuses longer URLs before the app sees them
CLOSE_REASON_BYTES = 123  # a websocket close frame's reason must fit in 123 bytes
INVALID_MESSAGE = 4400  # graphql-transport-ws: Invalid message (also used for the legacy protocol)
MESSAGE_TOO_BIG = 1009  # RFC 6455: a message too big to process


def error_response(
    status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None, **extensions: Any
) -> JSONResponse:
    """An HTTP error answer: JSON shaped like a GraphQL answer, with the contract's code."""
    body = error_body(message, code or code_for_status(status), **extensions)
    return JSONResponse(body, status_code=status, headers=headers)


# -- HTTP ----------------------------------------------------------------------------------------


class LedgerGraphQL(GraphQL):  # type: ignore[type-arg]
    """Strawberry's ASGI view with jobledger's per-request context, strict request parsing
    (a body is UTF-8 JSON whose top level is an object) and the websocket rules below."""

    def __init__(self, app: Starlette, settings: Settings) -> None:
        super().__init__(
            build_schema(),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            keep_alive=True,
            keep_alive_interval=15,
            max_subscriptions_per_connection=None,  # Slots enforces it, with a code
        )
        self.schema.execution_context_class = PerEventExecution  # type: ignore[attr-defined]
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
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:  # a body that is not a GraphQL request at all
            response = error_response(exc.status_code, exc.reason)
        await response(scope, receive, send)

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
                f" not {_json_kind(value)}",
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

    async def process_result(self, request: Request, result: Any) -> dict[str, Any]:
        """Every error leaves with a code: documents that fail to parse get VALIDATION."""
        answer: dict[str, Any] = await super().process_result(request, result)
        with_codes(answer.get("errors") or ())
        return answer

    async def get_context(self, request: Request | WebSocket, response: Response | None = None) -> dict[str, Any]:
        state = self.app.state
        return {
            "request": request,
            "response": response,
            "services": state.services,
            "read": state.read_side.models,
            "shared": state.shared,
            "replays": state.replays,
            "loaders": new_loaders(state.read_side.models),
        }


def _json_kind(value: Any) -> str:
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
    """One readable line per HTTP request: method, path, status, time, caller, request id. An
    unexpected exception is logged here once, with the request id, and answered 500 in JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, answered = time.perf_counter(), 500, False
        request_id = new_request_id()

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
            if not answered:  # else the client sees the connection end
                message = f"internal error; the service log has the details under request id {request_id}"
                answer = error_response(500, message, "INTERNAL", requestId=request_id)
                with contextlib.suppress(Exception):
                    await answer(scope, receive, sending)
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


# -- websockets ----------------------------------------------------------------------------------

# The shape of each client message, by protocol: field -> (accepted types, required).
_OPTIONAL_OBJECT = ((dict, type(None)), False)
_ID = ((str,), True)
_TRANSPORT_MESSAGES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "connection_init": {"payload": _OPTIONAL_OBJECT},
    "ping": {"payload": _OPTIONAL_OBJECT},
    "pong": {"payload": _OPTIONAL_OBJECT},
    "subscribe": {"id": _ID, "payload": ((dict,), True)},
    "complete": {"id": _ID},
}
_LEGACY_MESSAGES: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "connection_init": {"payload": _OPTIONAL_OBJECT},
    "start": {"id": _ID, "payload": ((dict,), True)},
    "stop": {"id": _ID},
}
_OPERATION: dict[str, tuple[tuple[type, ...], bool]] = {
    "query": ((str,), True),
    "variables": _OPTIONAL_OBJECT,
    "operationName": ((str, type(None)), False),
    "extensions": _OPTIONAL_OBJECT,
}
_TYPE_NAMES = {dict: "an object", str: "a string", type(None): "null"}


def message_problem(message: Any, shapes: Mapping[str, Mapping[str, tuple[tuple[type, ...], bool]]]) -> str | None:
    """What is wrong with a client's websocket message, in words; None when its shape is right
    (message types a protocol does not know are left to that protocol's rule)."""
    if not isinstance(message, dict):
        return "a message must be a JSON object with a `type`"
    kind = message.get("type")
    if not isinstance(kind, str):
        return "a message must have a `type` string"
    checks = [(f"`{name}`", message, name, rule) for name, rule in shapes.get(kind, {}).items()]
    if isinstance(message.get("payload"), dict) and "id" in shapes.get(kind, {}):
        checks += [(f"`payload.{name}`", message["payload"], name, rule) for name, rule in _OPERATION.items()]
    for label, holder, name, (types, required) in checks:
        if name not in holder:
            if required:
                return f"a {kind} message needs {label}"
            continue
        if not isinstance(holder[name], types) or (name == "id" and holder[name] == ""):
            wanted = " or ".join(_TYPE_NAMES[t] for t in types)
            return f"{label} of a {kind} message must be {wanted}" + (" (not empty)" if name == "id" else "")
    return None


class MessageTooBig(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"a message of {size:,} bytes is over the limit of {limit:,} bytes")


class LimitedWebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's websocket adapter with a size limit on messages, close reasons cut to fit a
    close frame, and a send after the socket closed taken as the disconnection it is."""

    view: LedgerGraphQL

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        limit = self.view.max_message_bytes
        while self.ws.application_state != WebSocketState.DISCONNECTED:
            try:
                message = await self.ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                raise NonTextMessageReceived
            size = len(text) if text.isascii() else len(text.encode())
            if size > limit:
                raise MessageTooBig(size, limit)
            try:
                parsed = self.view.decode_json(text)
            except (ValueError, RecursionError):  # not JSON, too deep, an integer too long
                if ignore_parsing_errors:
                    continue
                raise NonJsonMessageReceived from None
            yield parsed

    async def send_json(self, message: Mapping[str, object]) -> None:
        try:
            await super().send_json(message)
        except RuntimeError as exc:  # Starlette: a send after the close
            raise StrawberryDisconnected from exc

    async def close(self, code: int, reason: str) -> None:
        fitted = reason.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # already closed: nothing to do
            await self.ws.close(code=code, reason=fitted)


def _give_back_when_done(slots: Slots, task: asyncio.Task[Any] | None) -> None:
    if task is None:
        slots.give_back()
    else:
        task.add_done_callback(lambda _: slots.give_back())


def _log_operation_failure(error: BaseException) -> None:
    if isinstance(error, StrawberryDisconnected):
        return  # the client left while an operation was sending to it
    request_id = new_request_id()
    log.error("internal error in a websocket operation (request id %s)", request_id, exc_info=error)


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """graphql-transport-ws. A malformed message closes the socket with 4400 (Invalid message), a
    message over the size limit with 1009; the protocol's own rules close with 4401 (subscribe
    before connection_ack), 4409 (an id in use), 4429 (a second connection_init) and 4408 (no
    connection_init in time). An operation over the limits is refused with a coded `error` and
    the connection stays open. None of these leaves a traceback in the log."""

    view: LedgerGraphQL

    async def handle(self) -> None:
        self.on_request_accepted()
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(message)  # type: ignore[arg-type]
            except NonTextMessageReceived:
                await self.handle_invalid_message("WebSocket message type must be text")
            except NonJsonMessageReceived:
                await self.handle_invalid_message("WebSocket message must be valid JSON")
            except MessageTooBig as exc:
                await self.websocket.close(MESSAGE_TOO_BIG, str(exc))
        except StrawberryDisconnected:
            pass
        finally:
            await self.shutdown()

    async def handle_message(self, message: Any) -> None:
        problem = message_problem(message, _TRANSPORT_MESSAGES)
        if problem:
            await self.handle_invalid_message(problem)
            return
        if message["type"] == "connection_init" and message.get("payload") is None:
            message = {**message, "payload": {}}  # the protocol allows null; Strawberry would close
        await super().handle_message(message)

    async def handle_subscribe(self, message: Any) -> None:
        op_id = message["id"]
        if not self.connection_acknowledged or op_id in self.operations:
            await super().handle_subscribe(message)  # closes with 4401 / 4409
            return
        try:
            self.view.slots.take(len(self.operations))
        except ValidationError as exc:
            await self.send_message({"id": op_id, "type": "error", "payload": [coded(exc).formatted]})
            return
        await super().handle_subscribe(message)
        operation = self.operations.get(op_id)
        _give_back_when_done(self.view.slots, operation.task if operation else None)

    async def _send_result_stream(self, operation: Operation[Context, None], result_source: Any) -> None:
        try:
            await super()._send_result_stream(operation, result_source)
        except GraphQLError as error:  # raised by a parsing extension (ParserCache), not returned
            await operation.send_initial_errors([error])
            raise _OperationStreamClosed from None  # nothing more to send for it

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error":
            with_codes(message["payload"])
        elif message.get("type") == "next":
            with_codes(message["payload"].get("errors") or ())
        await super().send_message(message)

    async def handle_task_exception(self, error: Exception) -> None:
        _log_operation_failure(error)


class LegacyWSHandler(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws (subscriptions-transport-ws), which has no close codes of its own: a
    malformed message is answered with `connection_error` (or `error` for its operation id)
    carrying a coded error, then the socket closes with 4400, or 1009 for a message over the size
    limit. An operation over the limits gets a coded `error` and the connection stays open."""

    view: LedgerGraphQL

    async def handle(self) -> None:
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(message)  # type: ignore[arg-type]
            except NonTextMessageReceived:
                await self.refuse("a message must be text (JSON), not binary")
            except NonJsonMessageReceived:
                await self.refuse("a message must be valid JSON")
            except MessageTooBig as exc:
                await self.refuse(str(exc), close_code=MESSAGE_TOO_BIG)
        except StrawberryDisconnected:
            pass
        finally:
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with contextlib.suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def handle_message(self, message: Any) -> None:
        problem = message_problem(message, _LEGACY_MESSAGES)
        if problem:
            op_id = message.get("id") if isinstance(message, dict) else None
            await self.refuse(problem, op_id if isinstance(op_id, str) and op_id else None)
            return
        await super().handle_message(message)

    async def refuse(self, problem: str, op_id: str | None = None, close_code: int = INVALID_MESSAGE) -> None:
        error = error_body(problem, "VALIDATION")["errors"][0]
        reply: dict[str, Any] = {"type": "connection_error", "payload": error}
        if op_id is not None:
            reply = {"type": "error", "id": op_id, "payload": error}
        with contextlib.suppress(StrawberryDisconnected):
            await self.send_message(reply)  # type: ignore[arg-type]
        await self.websocket.close(close_code, problem)

    async def handle_start(self, message: Any) -> None:
        op_id = message["id"]
        if not self.connection_acknowledged:
            await super().handle_start(message)  # closes with 4401
            return
        if op_id in self.tasks:  # a start for an id in use replaces that operation
            await self.cleanup_operation(op_id)
        try:
            self.view.slots.take(len(self.tasks))
        except ValidationError as exc:
            await self.send_message({"type": "error", "id": op_id, "payload": coded(exc).formatted})  # type: ignore[typeddict-item]
            return
        await super().handle_start(message)
        _give_back_when_done(self.view.slots, self.tasks.get(op_id))

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None, variables: dict[str, object] | None
    ) -> None:
        try:
            await super().handle_async_results(operation_id, query, operation_name, variables)
        except GraphQLError as error:  # raised by a parsing extension (ParserCache), not returned
            with contextlib.suppress(StrawberryDisconnected):
                await self.send_message({"type": "error", "id": operation_id, "payload": error.formatted})
        except Exception as exc:
            _log_operation_failure(exc)

    async def send_message(self, message: Any) -> None:
        if message.get("type") == "error" and isinstance(message.get("payload"), dict):
            with_codes([message["payload"]])
        elif message.get("type") == "data":
            with_codes(message["payload"].get("errors") or ())
        await super().send_message(message)


def http_protocol() -> type[asyncio.Protocol] | str:
    """The HTTP protocol for uvicorn: its httptools protocol, answering a request it cannot parse
    (a URL over 64 KiB, malformed headers) with coded JSON rather than plain text."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn's h11 protocol, whose rare refusals stay plain text
        return "auto"

    class JsonRefusals(HttpToolsProtocol):
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

    return JsonRefusals


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
        app.state.replays = Replays(app.state.services)
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
        """200 when the read models are complete and close behind the store; 503 when they
        are catching up, stalled on an event (which, and why), degraded by events set aside
        that nobody acknowledged, or the store cannot be read."""
        read_side: ReadSide = request.app.state.read_side
        try:
            ready, body = await asyncio.to_thread(read_side.health, READY_LAG)
        except Exception as exc:  # the store is unreachable: say so (not where it is), do not crash
            log.warning("readyz: the store could not be read: %s", exc)
            reason = f"the store could not be read ({type(exc).__name__}); the service log has the details"
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse(body, status_code=200 if ready else 503)

    async def dashboard(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app = Starlette(lifespan=lifespan, exception_handlers={StarletteHTTPException: http_error})
    graphql = LedgerGraphQL(app, settings)
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
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestLog)  # outermost: it logs and answers whatever fails inside
    return app
