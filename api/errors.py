"""The one place that maps errors to the contract's codes, and masks everything else."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from domain.errors import LedgerError

log = logging.getLogger("jobledger.api")
F = TypeVar("F", bound=Callable[..., Any])


def coded(exc: LedgerError, error: GraphQLError | None = None) -> GraphQLError:
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
        except LedgerError as exc:
            raise coded(exc) from None

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

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if result is not None and errors:
            result.errors = [self.process(e) for e in errors]  # type: ignore[union-attr]

    def process(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, LedgerError):
            return coded(original, error)
        # No path: the error arose before execution (parsing, validation, coercing a
        # literal such as a Long that is too big), so it is the caller's document.
        if original is None or isinstance(original, GraphQLError) or error.path is None:
            if not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": "VALIDATION"}
            return error
        request_id = uuid.uuid4().hex[:12]
        log.error("internal error (request id %s)", request_id, exc_info=original)
        return GraphQLError(
            f"internal error; the service log has the details under request id {request_id}",
            nodes=error.nodes,
            path=error.path,
            extensions={"code": "INTERNAL", "requestId": request_id},
        )
