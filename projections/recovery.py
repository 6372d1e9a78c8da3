"""What the projection runner does when a step fails, so that no event can wedge it.

A step that fails is retried with exponential backoff (0.1 s doubling to 10 s, cut
short when the runner stops). An error that is the event's fault (its data: PostgreSQL
refuses a NUL in text, a handler meets a value it cannot use) is retried `max_attempts`
times (5; JOBLEDGER_PROJECTION_MAX_ATTEMPTS), then the event is set aside: recorded in
the failures table with the position moving past it in the same transaction, logged as
an ERROR and announced. An error that is not the event's (the database is unreachable,
a lock wait timed out, a table is missing) is retried for as long as it lasts and never
sets an event aside. Meanwhile the runner is stalled, and says so: once in the log per
distinct failure, and in the failures table (status 'retrying') for every instance.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, replace

from persistence.faults import is_unavailable
from projections.failures import (
    ACKNOWLEDGED,
    RETRYING,
    SET_ASIDE,
    Failure,
    FailuresTable,
    Status,
    now,
    scrub,
    short_reason,
)
from projections.feed import Change, ChangeFeed
from projections.schema import RUNNER_NAME, TRACKING
from projections.stores import ReadStore

log = logging.getLogger("jobledger.projections")

DEFAULT_MAX_ATTEMPTS = 5
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 10.0
# Events set aside one after the other with none applied in between look like a fault
# of the read models (a bad deployment), not of the events: past this many the runner
# stops setting them aside and stalls instead, loudly.
MAX_SET_ASIDE_IN_A_ROW = 10
MAX_ERROR_TEXT = 2000


class RunnerConflict(Exception):
    """Another runner applied this batch first; ours was rolled back."""


class EventFailure(Exception):
    """The event just after `start` could not be read or applied."""

    def __init__(self, start: int, position: int, aggregate_id: str, event_type: str, error: BaseException) -> None:
        super().__init__(f"event {position} ({event_type} of {aggregate_id}): {error}")
        self.start = start
        self.position = position
        self.aggregate_id = aggregate_id
        self.event_type = event_type
        self.error = error
        self.passed = 0  # the events before it that were applied one at a time


# -- what an error says about the event -------------------------------------------------

# SQLSTATE classes that are about the connection or the server, never about the data:
# connection exceptions, rollbacks (serialization, deadlock), insufficient resources,
# operator intervention (statement timeout, shutdown), system errors, and the SQL itself
# (a missing table or column, a privilege: a deployment's fault); and lock timeouts.
_NOT_THE_EVENTS_SQLSTATE_CLASSES = frozenset({"08", "40", "42", "53", "57", "58", "F0", "XX"})
_NOT_THE_EVENTS_SQLSTATES = frozenset({"55P03", "55006", "25P02"})


def blames_event(exc: BaseException) -> bool:
    """True if `exc` comes from the event's data, so that retrying cannot help: a value the
    database refuses, a handler that cannot use the state. False for trouble of the
    connection, the server or the tables, which retrying (or an operator) fixes."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, EventFailure):
            current = current.error
            continue
        if isinstance(current, (RunnerConflict, OSError, MemoryError)) or is_unavailable(current):
            return False  # the store is away (an outage): never the event's fault
        sqlstate = getattr(current, "sqlstate", None)
        module = type(current).__module__
        if module.startswith("psycopg"):
            if sqlstate:
                return not (sqlstate[:2] in _NOT_THE_EVENTS_SQLSTATE_CLASSES or sqlstate in _NOT_THE_EVENTS_SQLSTATES)
            names = {cls.__name__ for cls in type(current).__mro__}
            # Without a SQLSTATE: the connection failed (OperationalError, InterfaceError) or
            # the pool had none to give (PoolTimeout); DataError etc. come from the client
            # refusing a value (a NUL in text).
            return not (names & {"OperationalError", "InterfaceError", "PoolTimeout", "PoolClosed"})
        if isinstance(current, sqlite3.Error):
            return isinstance(current, (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.InterfaceError)) or (
                isinstance(current, sqlite3.ProgrammingError) and "no such" not in str(current)
            )
        if module.startswith("eventsourcing") and current.__cause__ is not None:
            current = current.__cause__  # eventsourcing wraps the driver's errors: judge those
            continue
        if module.startswith("eventsourcing"):
            names = {cls.__name__ for cls in type(current).__mro__}
            return not (names & {"OperationalError", "InterfaceError", "PersistenceError"})
        return not module.startswith("asyncpg")  # asyncpg errors are the query side's
    return True


def describe(exc: BaseException) -> str:
    error = exc.error if isinstance(exc, EventFailure) else exc
    message = str(error).strip() or "(no message)"
    return scrub(f"{type(error).__name__}: {message}")[:MAX_ERROR_TEXT]


@dataclass
class Trouble:
    """What the runner is stuck on now (in memory; the failures table has a copy)."""

    failure: Failure
    event_attempts: int  # attempts that failed through the event's fault
    key: tuple[int | None, str]  # what was logged: one line per distinct failure


class Recovery:
    """The runner's failures: what it is stuck on (`trouble`), how long to wait before the
    next attempt, and when an event is set aside. `on_set_aside` listeners are called (in
    the runner's thread) with each event set aside, before it is announced."""

    def __init__(
        self,
        store: ReadStore,
        feed: ChangeFeed,
        *,
        max_attempts: int | None = None,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_max: float = BACKOFF_MAX_S,
    ) -> None:
        self.store = store
        self.table = FailuresTable(store)
        self.feed = feed
        configured = max_attempts or int(os.environ.get("JOBLEDGER_PROJECTION_MAX_ATTEMPTS") or 0)
        self.max_attempts = max(1, configured or DEFAULT_MAX_ATTEMPTS)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_set_aside: list[Callable[[Failure], None]] = []
        self.trouble: Trouble | None = None
        self.clear_retrying = True  # a 'retrying' row may be left (by us, or a runner before us)
        self._failed_steps = 0  # failures since the last progress: the backoff's exponent

    def status(self, position: int, head: int) -> Status:
        """Position and head, and what keeps the read models from being complete: the event
        the runner is stuck on (from whichever instance runs it), and the events set aside."""
        counts = self.table.counts()
        failing = self.table.retrying_after(position) if counts.get(RETRYING) else None
        trouble = self.trouble
        if trouble is not None and (failing is None or failing.position == trouble.failure.position):
            failing = trouble.failure  # this process is the one retrying: its copy is the freshest
        return Status(
            position=position,
            head=head,
            failing=failing,
            set_aside=counts.get(SET_ASIDE, 0),
            acknowledged=counts.get(ACKNOWLEDGED, 0),
            newest_set_aside=self.table.newest_set_aside() if counts.get(SET_ASIDE) else None,
        )

    def backoff(self) -> float:
        """Seconds to wait before the next attempt."""
        delay = min(self.backoff_max, self.backoff_initial * 2 ** max(0, self._failed_steps - 1))
        return delay * random.uniform(0.9, 1.1)

    def progressed(self, last: int, *, cleared: bool) -> None:
        """The runner applied events up to `last` (`cleared`: and deleted 'retrying' rows)."""
        trouble = self.trouble
        self._failed_steps = 0
        if trouble is not None and trouble.failure.position is not None and trouble.failure.position > last:
            return  # applied the events before the one that fails
        if trouble is not None and trouble.failure.position is None:
            log.info("projections recovered after %d failed attempts", trouble.failure.attempts)
        elif trouble is not None:
            failure = trouble.failure
            log.info(
                "projections recovered: event %s (%s of %s) applied after %d failed attempts",
                failure.position,
                failure.event_type,
                failure.aggregate_id,
                failure.attempts,
            )
        self.trouble = None
        if cleared:
            self.clear_retrying = False

    def failed(self, exc: BaseException, applied_to: int) -> EventFailure | None:
        """Note a failure of the step after `applied_to` (-1: unknown). Returns the event
        when its attempts are used up and it is to be set aside (`set_aside`); otherwise
        logs the failure (once per distinct one) and records it for the status."""
        self._failed_steps += 1
        event = exc if isinstance(exc, EventFailure) else None
        at_fault = blames_event(exc)
        text = describe(exc)
        moment = now()
        previous = self.trouble
        position = event.position if event is not None else None
        if previous is not None and previous.failure.position == position:
            trouble = previous
            trouble.failure = replace(
                trouble.failure, attempts=trouble.failure.attempts + 1, error=text, last_failed=moment
            )
            trouble.event_attempts += 1 if at_fault else 0
        else:
            trouble = Trouble(
                failure=Failure(
                    position=position,
                    aggregate_id=event.aggregate_id if event is not None else "",
                    event_type=event.event_type if event is not None else "",
                    status=RETRYING,
                    attempts=1,
                    error=text,
                    first_failed=moment,
                    last_failed=moment,
                ),
                event_attempts=1 if at_fault else 0,
                key=(None, ""),
            )
        self.trouble = trouble
        if event is not None and at_fault and trouble.event_attempts >= self.max_attempts:
            return event
        self._report(trouble, exc, at_fault, applied_to)
        return None

    def set_aside(self, event: EventFailure) -> bool:
        """Move the runner's position past the event and record it as set aside, in one
        transaction; then log it, tell the listeners and announce it. False when another
        runner passed the position first, or (the runner stays stalled) when that failed or
        the events just before it were all set aside too."""
        trouble = self.trouble
        assert trouble is not None  # `failed` has just noted it
        try:
            done = self._set_aside(event, trouble)
        except RunnerConflict:
            self.trouble = None
            return False
        except Exception as failure_to_set_aside:  # the database went away meanwhile: retry all later
            log.warning("could not set event %d aside: %s", event.position, describe(failure_to_set_aside))
            done = None
        if done is None:
            self._report(trouble, event, True, -1)
            return False
        failure, payload = done
        self.trouble = None
        self._failed_steps = 0
        log.error(
            "projections set event %d (%s of %s) aside after %d failed attempts: %s. The read models lack it "
            "and say they are degraded until it is acknowledged (`jobledger projections acknowledge`) or a "
            "rebuild applies it after a fix (`jobledger projections retry`)",
            failure.position,
            failure.event_type,
            failure.aggregate_id,
            failure.attempts,
            failure.reason,
        )
        for listener in self.on_set_aside:
            try:
                listener(failure)
            except Exception:
                log.exception("a listener of set-aside events failed")
        self.feed.publish(Change.from_payload(payload))
        return True

    def _set_aside(self, event: EventFailure, trouble: Trouble) -> tuple[Failure, str] | None:
        """The transaction that sets the event aside; (the failure, its announcement), or
        None when the events just before it were set aside too."""
        failure = replace(trouble.failure, status=SET_ASIDE)
        assert failure.position is not None
        payload = json.dumps(
            {
                "first": failure.position,
                "position": failure.position,
                "jobs": [],
                "queues": [],
                "tasks": [],
                "types": [failure.event_type],
                "more": False,
                "skipped": [failure.position],
            },
            separators=(",", ":"),
        )
        with self.store.transaction() as tx:
            if self.table.set_aside_just_before(tx, failure.position, MAX_SET_ASIDE_IN_A_ROW) >= MAX_SET_ASIDE_IN_A_ROW:
                trouble.failure = replace(
                    trouble.failure,
                    error=short_reason(
                        f"not set aside: the {MAX_SET_ASIDE_IN_A_ROW} events before it were set aside too, which "
                        "looks like a fault of the read models or the database, not of the events; "
                        f"fix it and restart. {trouble.failure.error}"
                    ),
                )
                return None
            moved = tx.execute(
                f"UPDATE {TRACKING} SET position = ? WHERE name = ? AND position = ?",
                (failure.position, RUNNER_NAME, event.start),
            )
            if moved != 1:
                raise RunnerConflict(f"position {event.start} was already passed by another runner")
            self.table.upsert(tx, failure)
            tx.announce(payload)
        return failure, payload

    def _report(self, trouble: Trouble, exc: BaseException, at_fault: bool, applied_to: int) -> None:
        failure = trouble.failure
        key = (failure.position, failure.reason)
        if key != trouble.key:
            trouble.key = key
            if failure.position is None:
                log.warning(
                    "projections stalled after position %s: %s; retrying with backoff (up to %.0f s apart)",
                    applied_to if applied_to >= 0 else "?",
                    failure.reason,
                    self.backoff_max,
                    exc_info=exc,
                )
            else:
                log.warning(
                    "projections stalled at event %d (%s of %s): %s; %s",
                    failure.position,
                    failure.event_type,
                    failure.aggregate_id,
                    failure.reason,
                    f"retrying with backoff; set aside after {self.max_attempts} attempts"
                    if at_fault
                    else "not the event's fault: retrying with backoff until it clears",
                    exc_info=exc,
                )
        if failure.position is not None:
            try:  # so that every instance's /readyz and `projections status` can say so
                self.table.record_retrying(failure)
                self.clear_retrying = True
            except Exception as exc2:
                log.debug("could not record the stall: %s", exc2)
