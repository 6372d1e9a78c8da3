"""What a database outage looks like to the layers above: the store is unavailable
(nothing was written; retry), or a commit's outcome is unknown (the connection dropped
while committing; a retry with the same idempotency key finds out). Both carry the
contract's code, as the domain's errors do."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DB_TIMEOUT_ENV = "JOBLEDGER_DB_TIMEOUT"
DEFAULT_DB_TIMEOUT_S = 5.0


def db_timeout() -> float:
    """Seconds a request waits for an unreachable database before it answers UNAVAILABLE."""
    raw = os.environ.get(DB_TIMEOUT_ENV) or ""
    try:
        value = float(raw) if raw else DEFAULT_DB_TIMEOUT_S
    except ValueError:
        raise SystemExit(f"{DB_TIMEOUT_ENV} must be a number of seconds, not {raw!r}") from None
    return max(0.5, value)


class StoreUnavailableError(Exception):
    """The database could not be reached in time; nothing was written."""

    code = "UNAVAILABLE"

    @property
    def details(self) -> dict[str, object]:
        return {"retry": True}

    def __init__(self, message: str = "") -> None:
        super().__init__(message or "the database cannot be reached: nothing was written; retry in a few seconds")
        self.message = str(self)


class OutcomeUnknownError(Exception):
    """The connection dropped while the commit was on its way: it may or may not have
    been committed."""

    code = "OUTCOME_UNKNOWN"

    @property
    def details(self) -> dict[str, object]:
        return {"retry": True}

    def __init__(self) -> None:
        super().__init__(
            "the database connection dropped while committing, so whether the change was recorded is "
            "unknown: send it again with the same Idempotency-Key (the answer then says what happened), "
            "or look it up before sending it again without one"
        )
        self.message = str(self)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is a database being unreachable (refused, reset, timed out), from
    any of the drivers, rather than a fault of the statement."""
    if isinstance(exc, StoreUnavailableError | ConnectionError | TimeoutError):
        return True
    names = {cls.__module__.split(".")[0] + "." + cls.__name__ for cls in type(exc).__mro__}
    return bool(
        names
        & {
            "psycopg.OperationalError",
            "psycopg.InterfaceError",
            "psycopg_pool.PoolTimeout",
            "eventsourcing.OperationalError",
            "eventsourcing.InterfaceError",
            "asyncpg.PostgresConnectionError",
            "asyncpg.InterfaceError",
            "asyncpg.ConnectionDoesNotExistError",
            "asyncpg.CannotConnectNowError",
        }
    )


def within(timeout: float, call: Callable[[], T], retryable: tuple[type[BaseException], ...]) -> T:
    """`call()`, tried again on `retryable` errors (a pooled connection that died with a
    restart of the server) until `timeout` seconds have passed; then StoreUnavailableError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except retryable as exc:
            if time.monotonic() >= deadline:
                raise StoreUnavailableError() from exc
            time.sleep(0.1)
