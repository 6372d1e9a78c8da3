"""What a database outage looks like to the layers above: the store is unavailable
(nothing was written; retry), or a commit's outcome is unknown (the connection dropped
while committing; a retry with the same idempotency key finds out). Both carry the
contract's code, as the domain's errors do."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
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


_deadline = threading.local()


class _Store:
    """What every thread has seen of the store lately: whether its last call failed, and
    how long that failed attempt took (a refused connection: at once; none from the pool:
    the pool's whole timeout)."""

    down = False
    attempt = 0.0


_store = _Store()


@contextlib.contextmanager
def deadline_in(seconds: float) -> Iterator[None]:
    """Every database call in the block (on this thread) gives up retrying once `seconds`
    have passed since the block began: one request's many calls share one wait."""
    outer, outer_down = getattr(_deadline, "at", None), getattr(_deadline, "down", False)
    _deadline.at = min(outer, time.monotonic() + seconds) if outer is not None else time.monotonic() + seconds
    try:
        yield
    finally:
        _deadline.at, _deadline.down = outer, outer_down


def remaining() -> float | None:
    """Seconds left of this thread's request deadline (`deadline_in`); None without one."""
    at = getattr(_deadline, "at", None)
    return None if at is None else max(0.0, at - time.monotonic())


@contextlib.contextmanager
def taken(lock: threading.Lock) -> Iterator[None]:
    """Hold `lock`, waiting no longer than this thread's request deadline: a request queued
    behind others that wait for an unreachable store answers UNAVAILABLE in time too."""
    left = remaining()
    if not lock.acquire(timeout=-1 if left is None else left):
        raise StoreUnavailableError()
    try:
        yield
    finally:
        lock.release()


def within(timeout: float, call: Callable[[], T], retryable: tuple[type[BaseException], ...]) -> T:
    """`call()`, tried again on `retryable` errors (a pooled connection that died with a
    restart of the server) until `timeout` seconds have passed, or the deadline of the
    request it serves (`deadline_in`); then StoreUnavailableError."""
    deadline = time.monotonic() + timeout
    shared = getattr(_deadline, "at", None)
    if shared is not None:
        if getattr(_deadline, "down", False):
            raise StoreUnavailableError()  # found unreachable earlier in this request
        deadline = min(deadline, shared)
    while True:
        began = time.monotonic()
        if _store.down and deadline - began < min(_store.attempt, timeout / 2):
            # The store is away, and most of this request's time went (waiting for a lock
            # held by a call that waited for it): an attempt would outlast the deadline.
            raise StoreUnavailableError()
        try:
            found = call()
            _store.down = False
            return found
        except retryable as exc:
            _store.down, _store.attempt = True, time.monotonic() - began
            # Another attempt only if one as long as this one still fits (a refused connection
            # fails at once; waiting for the pool's connection takes its whole timeout).
            if time.monotonic() + (time.monotonic() - began) + 0.1 >= deadline:
                if shared is not None:
                    _deadline.down = True  # the request's later calls give up at once
                raise StoreUnavailableError() from exc
            time.sleep(0.1)
