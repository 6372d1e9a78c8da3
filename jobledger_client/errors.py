"""Exceptions named after the contract's error codes.

Every failed call raises a `JobledgerError`; its class says what went wrong
(`NotFound`, `Validation`, `Conflict`, `InvalidTransition`, `Forbidden`,
`Unauthenticated`, `Unavailable`, `OutcomeUnknown`), `.message` says it in words,
and `.details` holds the rest of the error's `extensions` (for example `field` and
`reason` of a validation error, or `from`, `to` and `allowed` of a refused transition).
A failed mutation also carries the `idempotency_key` it was sent with: sending it again
with that key (`idempotency_key=`) cannot do it twice.

    try:
        client.update_job(job_id, status="running")
    except InvalidTransition as exc:
        print(exc.from_, "->", exc.to, "allowed:", exc.allowed)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobledger_client.credentials import missing_token_advice


class JobledgerError(Exception):
    """Base of every error the client raises.

    `code` is the contract's error code (NOT_FOUND, VALIDATION, ...), `message`
    the server's words, `details` the error's other `extensions`, `errors` every
    GraphQL error of the answer (the first one decided the class) and `path` the
    field it arose in, when the server said. `idempotency_key` is the key a mutation
    was sent with (None for a query).
    """

    code: str = "ERROR"
    idempotency_key: str | None = None

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: Mapping[str, Any] | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        path: Sequence[str | int] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = dict(details or {})
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors or ()]
        self.path: list[str | int] | None = list(path) if path is not None else None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class NotFound(JobledgerError):
    """NOT_FOUND: the queue, job, task or lease does not exist. `.kind` and `.key` name it."""

    code = "NOT_FOUND"

    @property
    def kind(self) -> str | None:
        """What does not exist: Queue, Job, Task..."""
        return self.details.get("kind")

    @property
    def key(self) -> str | None:
        """The id or code that was looked for."""
        return self.details.get("key")


class Validation(JobledgerError):
    """VALIDATION: the request was not acceptable. `.field` and `.reason` say which part and why,
    when the server (or the client) could tell."""

    code = "VALIDATION"

    @property
    def field(self) -> str | None:
        """The argument or input field at fault."""
        return self.details.get("field")

    @property
    def reason(self) -> str | None:
        """Why it was refused."""
        return self.details.get("reason")

    @classmethod
    def of(cls, field: str, reason: str) -> Validation:
        """A validation error found by the client itself, shaped like the server's."""
        return cls(f"{field}: {reason}", details={"field": field, "reason": reason})


class Conflict(JobledgerError):
    """CONFLICT: the request clashes with the current state (a duplicate code or task, an
    expired lease, a sealed queue...)."""

    code = "CONFLICT"


class InvalidTransition(JobledgerError):
    """INVALID_TRANSITION: a status change that is not allowed from the current status.
    `.from_`, `.to` and `.allowed` (the statuses it may go to) come from the server."""

    code = "INVALID_TRANSITION"

    @property
    def from_(self) -> str | None:
        """The status it is in."""
        return self.details.get("from")

    @property
    def to(self) -> str | None:
        """The status asked for."""
        return self.details.get("to")

    @property
    def allowed(self) -> list[str]:
        """The statuses it may go to from here."""
        return list(self.details.get("allowed") or [])


class Forbidden(JobledgerError):
    """FORBIDDEN: the caller may not do this."""

    code = "FORBIDDEN"


class Unauthenticated(JobledgerError):
    """UNAUTHENTICATED: the caller must say who they are: no token was sent, or the server
    refused the one sent (unknown, revoked or expired). The message ends with what to do."""

    code = "UNAUTHENTICATED"


class Internal(JobledgerError):
    """INTERNAL: the server failed; its log has the details under `.request_id`."""

    code = "INTERNAL"

    @property
    def request_id(self) -> str | None:
        """The id the server logged the failure under."""
        return self.details.get("requestId")


class Unavailable(JobledgerError):
    """UNAVAILABLE: the service could not be reached, or it could not reach its database
    (nothing was written), or it did not answer in GraphQL (`.details["status"]`: the HTTP
    status, when there was one). `.retryable` says whether sending it again may succeed;
    the clients' RetryPolicy does so for a while before raising it."""

    code = "UNAVAILABLE"

    @property
    def retryable(self) -> bool:
        """False for an answer that will not change (an HTTP 404 from a wrong URL, a web page)."""
        return bool(self.details.get("retry", True))


class OutcomeUnknown(Unavailable):
    """OUTCOME_UNKNOWN: the request left but its answer never came (the connection dropped,
    between the client and the service or the service and its database), so whether it was
    carried out is unknown. Send it again with the same `idempotency_key` to find out: the
    service answers as it did the first time, or does it now."""

    code = "OUTCOME_UNKNOWN"


ERROR_CLASSES: dict[str, type[JobledgerError]] = {
    cls.code: cls
    for cls in (
        NotFound,
        Validation,
        Conflict,
        InvalidTransition,
        Forbidden,
        Unauthenticated,
        Internal,
        Unavailable,
        OutcomeUnknown,
    )
}


def error_from(errors: Sequence[Mapping[str, Any]] | None) -> JobledgerError:
    """The exception for the `errors` of a GraphQL answer: its class from the first error's
    `extensions.code` (a plain `JobledgerError` for codes the client does not know). An
    UNAUTHENTICATED message gets what to do added: where a token comes from."""
    listed = [e if isinstance(e, Mapping) else {"message": str(e)} for e in errors or ()]
    first = listed[0] if listed else {"message": "the server answered with an error but said nothing"}
    raw = first.get("extensions")
    extensions: dict[str, Any] = dict(raw) if isinstance(raw, Mapping) else {}
    code = extensions.pop("code", None)
    cls = ERROR_CLASSES.get(str(code), JobledgerError) if code else JobledgerError
    message = str(first.get("message") or code or "error")
    if cls is Unauthenticated:
        message = f"{message} ({missing_token_advice()})"
    return cls(
        message,
        code=str(code) if code else None,
        details=extensions,
        errors=listed,
        path=first.get("path"),
    )
