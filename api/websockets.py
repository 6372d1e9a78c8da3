"""Websockets: message limits, and protocol errors closed with each protocol's close code
(graphql-transport-ws and the legacy graphql-ws) instead of a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

from graphql import GraphQLError
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.http.exceptions import WebSocketDisconnected as StrawberryDisconnected
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler

from api.context import Context
from api.errors import coded, error_body, new_request_id, with_codes
from api.subscriptions import Slots
from domain.errors import ValidationError

log = logging.getLogger("jobledger")

CLOSE_REASON_BYTES = 123  # a websocket close frame's reason must fit in 123 bytes
INVALID_MESSAGE = 4400  # graphql-transport-ws: Invalid message (also used for the legacy protocol)
MESSAGE_TOO_BIG = 1009  # RFC 6455: a message too big to process


class WebSocketLimits(Protocol):
    """What the handlers need of the GraphQL view that runs them (api.app.LedgerGraphQL)."""

    max_message_bytes: int
    slots: Slots

    def decode_json(self, data: str | bytes) -> object: ...


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

    view: WebSocketLimits

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

    view: WebSocketLimits

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

    view: WebSocketLimits

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
