"""The one place that maps errors to the contract's codes, and masks everything else."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from domain.errors import LedgerError
from persistence.faults import OutcomeUnknownError, StoreUnavailableError, is_unavailable

log = logging.getLogger("jobledger.api")
F = TypeVar("F", bound=Callable[..., Any])
# HTTP statuses the service answers itself (not through GraphQL), and their contract codes.
_STATUS_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND", 409: "CONFLICT"}


def code_for_status(status: int) -> str:
    """The contract code of an HTTP error status: the caller's to fix (VALIDATION) unless named."""
    return _STATUS_CODES.get(status, "INTERNAL" if status >= 500 else "VALIDATION")


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """A GraphQL-shaped error answer, for failures outside GraphQL execution (HTTP and websocket edge)."""
    return {"data": None, "errors": [{"message": message, "extensions": {"code": code, **extensions}}]}


def with_codes(errors: Iterable[dict[str, Any]]) -> None:
    """Gives each formatted error without a code VALIDATION: what reaches a client uncoded was
    refused before execution (a document that does not parse, a variable of the wrong type)."""
    for error in errors:
        extensions = error.get("extensions") or {}
        extensions.setdefault("code", "VALIDATION")
        error["extensions"] = extensions


def new_request_id() -> str:
    """The id an internal error is logged under and answered with."""
    return uuid.uuid4().hex[:12]


Coded = LedgerError | StoreUnavailableError | OutcomeUnknownError


def as_coded(exc: BaseException) -> Coded | None:
    """The coded error `exc` is, or stands for: the domain's, or the store's (an outage is
    UNAVAILABLE; a commit whose outcome is not known, OUTCOME_UNKNOWN); None for a fault."""
    if isinstance(exc, LedgerError | StoreUnavailableError | OutcomeUnknownError):
        return exc
    if is_unavailable(exc):
        log.warning("the database is unreachable: %s: %s", type(exc).__name__, exc)
        return StoreUnavailableError()
    return None


def coded(exc: Coded, error: GraphQLError | None = None) -> GraphQLError:
    """A GraphQL error carrying the domain error's code and details in `extensions`."""
    return GraphQLError(
        exc.message,
        nodes=error.nodes if error else None,
        path=error.path if error else None,
        extensions={"code": exc.code, **exc.details},
    )


def guarded(fn: F) -> F:
    """For async generators (subscriptions): raise domain errors as coded GraphQL errors."""

    @functools.wraps(fn)
    async def run(*args: Any, **kwargs: Any) -> Any:
        try:
            async for item in fn(*args, **kwargs):
                yield item
        except Exception as exc:
            known = as_coded(exc)
            if known is None:
                raise
            raise coded(known) from None

    return run  # type: ignore[return-value]


class ErrorCodes(SchemaExtension):
    """Gives every error `extensions.code`: the domain's code for domain errors,
    VALIDATION for documents that do not fit the schema, and masks the rest as
    INTERNAL with a request id that is also in the log."""

    def on_validate(self) -> Iterator[None]:
        """Documents that do not fit the schema are the caller's to fix: VALIDATION (this
        hook also covers subscriptions, which do not pass through the HTTP answer)."""
        yield
        for error in self.execution_context.pre_execution_errors or ():
            if not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": "VALIDATION"}

    def get_results(self) -> dict[str, Any]:
        """The answer's `extensions`: what resolvers noted in `context["extensions"]` (how many
        tasks createJob and addTasks created and merged), and, for a committed write answered
        while the read models lag, `readModelsBehind` (see `api.answers`)."""
        context = self.execution_context.context
        if not isinstance(context, dict):
            return {}
        results: dict[str, Any] = dict(context.get("extensions") or {})
        if context.get("behind"):
            results["readModelsBehind"] = str(context["behind"])
        return results

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [self.process(e) for e in errors]  # type: ignore[union-attr]

    def process(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        known = as_coded(original) if original is not None else None
        if known is not None:
            return coded(known, error)
        # No path: the error arose before execution (parsing, validation, coercing a
        # literal such as a Long that is too big), so it is the caller's document.
        if original is None or isinstance(original, GraphQLError) or error.path is None:
            if not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": "VALIDATION"}
            return error
        request_id = new_request_id()
        log.error("internal error (request id %s)", request_id, exc_info=original)
        return GraphQLError(
            f"internal error; the service log has the details under request id {request_id}",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": "INTERNAL", "requestId": request_id},
        )
