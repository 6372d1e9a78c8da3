"""The projection runner: follows the global log and keeps the read models in step.

Each batch of events is applied and the runner's position recorded in ONE
transaction, so a crash anywhere neither skips nor repeats an event. The update
of the position opens the transaction and is conditional on the position the batch
starts from, so two runners on one database can never both apply a batch.

No event can wedge it (see "When an event cannot be applied" in the README). A batch
that fails is retried with exponential backoff (0.1 s doubling to 10 s), its events
one at a time, which pins the event that fails. An error that is the event's fault
(its data: PostgreSQL refuses a NUL in text, a handler meets a value it cannot use)
is retried `max_attempts` times (5; JOBLEDGER_PROJECTION_MAX_ATTEMPTS), then the event
is set aside: recorded in `jl_projection_failures` with the position moving past it
in the same transaction, logged as an ERROR and announced, and the read models say
they are degraded until an operator acknowledges it (`jobledger projections
acknowledge`) or a rebuild applies it after a fix. An error that is not the event's
(the database is unreachable, a lock wait timed out, a table is missing) is retried
for as long as it lasts and never sets an event aside. While it retries the runner is
stalled, and says so: the event it is stuck on is in the failures table (status
'retrying'), for `/readyz` and `jobledger projections status` on every instance.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from domain.history import History, Record
from domain.ledger import Ledger
from projections import jobs, queues, tasks
from projections.batch import Batch, Handler, RunnerMemory
from projections.feed import Change, ChangeFeed
from projections.schema import DDL, FAILURES, RUNNER_NAME, TABLES, TRACKING
from projections.stores import ReadStore, Tx

log = logging.getLogger("jobledger.projections")

DEFAULT_MAX_ATTEMPTS = 5
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 10.0
# Events set aside one after the other with none applied in between look like a fault
# of the read models (a bad deployment), not of the events: past this many the runner
# stops setting them aside and stalls instead, loudly.
MAX_SET_ASIDE_IN_A_ROW = 10
MAX_ERROR_TEXT = 2000
MAX_REASON_TEXT = 200

RETRYING, SET_ASIDE, ACKNOWLEDGED = "retrying", "set_aside", "acknowledged"


def _handlers() -> dict[str, list[Handler]]:
    merged: dict[str, list[Handler]] = {}
    for module in (queues, jobs, tasks):
        for event_type, handler in module.HANDLERS.items():
            merged.setdefault(event_type, []).append(handler)
    return merged


HANDLERS = _handlers()


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


@dataclass(frozen=True)
class Failure:
    """An event the runner could not apply: the one it retries now, or one it set aside."""

    position: int | None  # None: no event to blame (the store could not be read)
    aggregate_id: str
    event_type: str
    status: str  # retrying, set_aside or acknowledged
    attempts: int
    error: str
    first_failed: str  # ISO 8601, UTC
    last_failed: str

    @property
    def reason(self) -> str:
        """The error, short: its first line, without connection details."""
        return short_reason(self.error)

    def to_json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "aggregate_id": self.aggregate_id,
            "event_type": self.event_type,
            "status": self.status,
            "attempts": self.attempts,
            "error": self.error,
            "first_failed": self.first_failed,
            "last_failed": self.last_failed,
        }


@dataclass(frozen=True)
class Status:
    position: int
    head: int
    failing: Failure | None = None  # the event the runner is stuck on now: stalled
    set_aside: int = 0  # events set aside and not acknowledged: degraded
    acknowledged: int = 0  # events set aside that an operator acknowledged
    newest_set_aside: Failure | None = None

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)

    @property
    def stalled(self) -> bool:
        return self.failing is not None


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
        if isinstance(current, (RunnerConflict, OSError, MemoryError)):
            return False
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


_CONNECTION_DETAILS = [
    re.compile(r'connection to server (at|on) "[^"]*"( \([^)]*\))?(, port \d+)?'),
    re.compile(r'socket "[^"]*"'),
    re.compile(r"\b(host|hostaddr|port|user|dbname|password)=\S+"),
]


def scrub(text: str) -> str:
    """The text without NUL characters (PostgreSQL refuses them) or connection details."""
    text = text.replace("\x00", "\\x00")
    for pattern in _CONNECTION_DETAILS:
        text = pattern.sub(lambda m: "connection to the database" if m.group(0).startswith("conn") else "…", text)
    return text


def describe(exc: BaseException) -> str:
    error = exc.error if isinstance(exc, EventFailure) else exc
    message = str(error).strip() or "(no message)"
    return scrub(f"{type(error).__name__}: {message}")[:MAX_ERROR_TEXT]


def short_reason(error: str) -> str:
    first = scrub(error).strip().splitlines()[0] if error.strip() else "unknown error"
    return first if len(first) <= MAX_REASON_TEXT else first[: MAX_REASON_TEXT - 1] + "…"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _failure(row: dict[str, Any]) -> Failure:
    return Failure(
        position=int(row["position"]),
        aggregate_id=row["aggregate_id"],
        event_type=row["event_type"],
        status=row["status"],
        attempts=int(row["attempts"]),
        error=row["error"],
        first_failed=row["first_failed"],
        last_failed=row["last_failed"],
    )


@dataclass
class _Trouble:
    """What the runner is stuck on now (in memory; the failures table has a copy)."""

    failure: Failure
    event_attempts: int  # attempts that failed through the event's fault
    key: tuple[int | None, str]  # what was logged: one line per distinct failure


class ProjectionRunner:
    def __init__(
        self,
        ledger: Ledger,
        store: ReadStore,
        feed: ChangeFeed | None = None,
        batch_size: int = 1000,
        *,
        max_attempts: int | None = None,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_max: float = BACKOFF_MAX_S,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.feed = feed or ChangeFeed()
        self.batch_size = batch_size
        configured = max_attempts or int(os.environ.get("JOBLEDGER_PROJECTION_MAX_ATTEMPTS") or 0)
        self.max_attempts = max(1, configured or DEFAULT_MAX_ATTEMPTS)
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.history = History(ledger)
        self.before_commit: Callable[[Batch], None] | None = None  # a test's crash point
        # Called (in the runner's thread) with each event set aside, before it is announced.
        self.on_set_aside: list[Callable[[Failure], None]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.memory = RunnerMemory()
        self._applied_to = -1  # where this runner's last batch ended (its memory is of up to there)
        self._trouble: _Trouble | None = None
        self._failed_steps = 0  # failures since the last progress: the backoff's exponent
        self._clear_retrying = True  # a 'retrying' row may be left (by us, or a runner before us)
        self._in_hook = False
        self._logged_outside: str | None = None

    # -- tables ----------------------------------------------------------------

    def setup(self) -> None:
        """Create the read-model tables and the runner's position, if missing."""
        with self.ledger.store.schema_lock(), self.store.transaction() as tx:
            for statement in DDL:
                tx.execute(statement.format(ts=self.store.timestamp_type, big=self.store.bigint_type))
            if tx.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (RUNNER_NAME,)) is None:
                tx.execute(f"INSERT INTO {TRACKING} (name, position) VALUES (?, 0)", (RUNNER_NAME,))
        self.feed.advance(self.position())

    def drop(self) -> None:
        self.memory.forget()
        self._applied_to = -1
        self._trouble = None
        with self.store.transaction() as tx:
            for table in TABLES:
                tx.execute(f"DROP TABLE IF EXISTS {table}")
        self.feed.position = 0

    def position(self) -> int:
        rows = self.store.read(f"SELECT position FROM {TRACKING} WHERE name = ?", (RUNNER_NAME,))
        return int(rows[0]["position"]) if rows else 0

    def status(self) -> Status:
        """Position and head, and what keeps the read models from being complete: the event
        the runner is stuck on (from whichever instance runs it), and the events set aside."""
        position = self.position()
        head = self.ledger.position()
        counts = {
            row["status"]: int(row["n"])
            for row in self.store.read(f"SELECT status, COUNT(*) AS n FROM {FAILURES} GROUP BY status")
        }
        failing: Failure | None = None
        if counts.get(RETRYING):
            rows = self.store.read(
                f"SELECT * FROM {FAILURES} WHERE status = ? AND position > ? ORDER BY position LIMIT 1",
                (RETRYING, position),
            )
            failing = _failure(rows[0]) if rows else None
        trouble = self._trouble
        if trouble is not None and (failing is None or failing.position == trouble.failure.position):
            failing = trouble.failure  # this process is the one retrying: its copy is the freshest
        newest: Failure | None = None
        if counts.get(SET_ASIDE):
            rows = self.store.read(
                f"SELECT * FROM {FAILURES} WHERE status = ? ORDER BY position DESC LIMIT 1", (SET_ASIDE,)
            )
            newest = _failure(rows[0]) if rows else None
        return Status(
            position=position,
            head=head,
            failing=failing,
            set_aside=counts.get(SET_ASIDE, 0),
            acknowledged=counts.get(ACKNOWLEDGED, 0),
            newest_set_aside=newest,
        )

    def failures(self, statuses: tuple[str, ...] = (SET_ASIDE, ACKNOWLEDGED)) -> list[Failure]:
        """The events set aside (and the one being retried, if asked for), oldest first."""
        marks = ", ".join("?" * len(statuses))
        rows = self.store.read(f"SELECT * FROM {FAILURES} WHERE status IN ({marks}) ORDER BY position", statuses)
        return [_failure(row) for row in rows]

    def set_aside_between(self, after: int, up_to: int) -> list[Failure]:
        rows = self.store.read(
            f"SELECT * FROM {FAILURES} WHERE status <> ? AND position > ? AND position <= ? ORDER BY position",
            (RETRYING, after, up_to),
        )
        return [_failure(row) for row in rows]

    def acknowledge(self, positions: list[int] | None = None) -> int:
        """Accept events set aside (all of them when `positions` is None): the read models
        stop saying they are degraded because of them. Returns how many were acknowledged."""
        with self.store.transaction() as tx:
            if positions is None:
                return tx.execute(f"UPDATE {FAILURES} SET status = ? WHERE status = ?", (ACKNOWLEDGED, SET_ASIDE))
            done = 0
            for position in positions:
                done += tx.execute(
                    f"UPDATE {FAILURES} SET status = ? WHERE status = ? AND position = ?",
                    (ACKNOWLEDGED, SET_ASIDE, position),
                )
            return done

    # -- applying --------------------------------------------------------------

    def run_batch(self) -> int:
        """Apply the next batch of events; returns how many were applied (0: caught up).
        Raises what applying raised (`catch_up` is the one that retries and sets aside).

        The events are read before the write transaction opens: on SQLite a writer
        must never wait for the event store while it holds the database's write lock."""
        start = self._start()
        records = self.history.read(start, self.batch_size)
        if not records:
            return 0
        return self._apply_batch(start, records)

    def _start(self) -> int:
        # Where our last batch ended is where the next one starts, unless another runner
        # applied some since: then the conditional update that opens the transaction finds
        # another position and refuses the batch before anything is applied, and the next
        # attempt reads the position (and forgets what it remembered of tasks).
        return self._applied_to if self._applied_to >= 0 else self.position()

    def _apply_batch(self, start: int, records: list[Record]) -> int:
        self._in_hook = False
        if start != self._applied_to:
            self.memory.forget()
        self._applied_to = -1
        clear_retrying = self._clear_retrying
        with self.store.transaction() as tx:
            # First, so that the row lock also makes a second runner wait for this batch.
            moved = tx.execute(
                f"UPDATE {TRACKING} SET position = ? WHERE name = ? AND position = ?",
                (records[-1].position, RUNNER_NAME, start),
            )
            if moved != 1:
                raise RunnerConflict(f"position {start} was already applied by another runner")
            batch = self._apply(tx, records)
            if clear_retrying:  # the event retried before is among these: it applies now
                tx.later(f"DELETE FROM {FAILURES} WHERE status = ? AND position <= ?", (RETRYING, batch.last))
            if self.before_commit is not None:
                self._in_hook = True
                self.before_commit(batch)
                self._in_hook = False
            payload = batch.payload()
            tx.announce(payload)
        self._applied_to = batch.last
        self._progressed(batch.last, cleared=clear_retrying)
        self.feed.publish(Change.from_payload(payload))
        return len(records)

    def _apply(self, tx: Tx, records: list[Record]) -> Batch:
        batch = Batch(memory=self.memory)
        tasks.prime(tx, records, batch)
        jobs.prime(tx, records, batch)
        for record in records:
            batch.saw(record)
            for handler in HANDLERS.get(record.type, ()):
                handler(tx, record, batch)
        jobs.roll_up(tx, batch.dirty_jobs)
        return batch

    def _progressed(self, last: int, *, cleared: bool) -> None:
        trouble = self._trouble
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
        self._trouble = None
        if cleared:
            self._clear_retrying = False

    def _step(self) -> int:
        """Pass the next batch: apply it whole, or when that fails, its events one at a time
        until the one that fails (raised as EventFailure). Returns how many were passed."""
        start = self._start()
        trouble = self._trouble
        if trouble is None or trouble.failure.position != start + 1:
            try:
                records: list[Record] | None = self.history.read(start, self.batch_size)
            except Exception as exc:
                if not blames_event(exc):
                    raise
                records = None  # an event in it cannot even be read: find which
            if records is not None:
                if not records:
                    return 0
                try:
                    return self._apply_batch(start, records)
                except RunnerConflict:
                    raise
                except Exception as exc:
                    if self._in_hook:
                        raise
                    # Whatever the cause, find the event it is stuck on (that is what the
                    # status names); whether it may be set aside depends on the cause.
                    log.debug("the batch after position %d failed (%s); applying its events one at a time", start, exc)
        return self._one_at_a_time(self.batch_size)

    def _one_at_a_time(self, limit: int) -> int:
        passed = 0
        while passed < limit:
            start = self._start()
            try:
                records = self.history.read(start, 1)
            except Exception as exc:
                if not blames_event(exc):
                    raise
                failure = self._event_failure(start, exc)
                failure.passed = passed
                raise failure from exc
            if not records:
                return passed
            try:
                self._apply_batch(start, records)
            except RunnerConflict:
                raise
            except Exception as exc:
                if self._in_hook:
                    raise
                record = records[0]
                failure = EventFailure(start, record.position, record.aggregate_id, record.type, exc)
                failure.passed = passed
                raise failure from exc
            passed += 1
        return passed

    def _event_failure(self, start: int, exc: BaseException) -> EventFailure:
        """Name the event after `start` that could not be read (its state cannot be decoded)."""
        try:
            found = self.ledger.recorder.select_notifications(start=start, limit=1, inclusive_of_start=False)
        except Exception:
            found = []
        if not found:
            return EventFailure(start, start + 1, "?", "?", exc)
        n = found[0]
        event_type = n.topic.split(":", 1)[-1] if isinstance(n.topic, str) else "?"
        return EventFailure(start, n.id, scrub(str(n.originator_id)), scrub(event_type)[:200], exc)

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything in the store now; `progress(done, total)` after each batch.

        A failure is retried with backoff; an event that keeps failing through its own
        fault is set aside after `max_attempts` (see the module's docstring). Returns how
        many events were passed (applied or set aside)."""
        return self._catch_up(progress, None)

    def _catch_up(self, progress: Callable[[int, int], None] | None, stop: threading.Event | None) -> int:
        pause = stop or threading.Event()
        applied, total = 0, self.status().lag if progress is not None else 0
        while stop is None or not stop.is_set():
            try:
                count = self._step()
            except RunnerConflict:
                continue
            except Exception as exc:
                if self._in_hook:  # a test's crash point: the process "died" here
                    self._in_hook = False
                    raise
                applied += exc.passed if isinstance(exc, EventFailure) else 0
                if self._failed(exc):
                    applied += 1
                else:
                    pause.wait(self._backoff())
                continue
            if count == 0:
                if self._trouble is not None:  # it cleared with nothing left to apply (the store is back)
                    self._progressed(self.position(), cleared=False)
                return applied
            applied += count
            if progress is not None:
                progress(applied, max(total, applied))
        return applied

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Drop the read models and replay the whole log into them (events set aside before
        are retried in their place)."""
        self.drop()
        self.setup()
        return self.catch_up(progress)

    # -- failures ---------------------------------------------------------------

    def _backoff(self) -> float:
        delay = min(self.backoff_max, self.backoff_initial * 2 ** max(0, self._failed_steps - 1))
        return delay * random.uniform(0.9, 1.1)

    def _failed(self, exc: BaseException) -> bool:
        """Note a failure: log it (once per distinct failure), record it for the status,
        and set the event aside when its attempts are used up. True if it was set aside."""
        self._failed_steps += 1
        event = exc if isinstance(exc, EventFailure) else None
        at_fault = blames_event(exc)
        text = describe(exc)
        now = _now()
        previous = self._trouble
        position = event.position if event is not None else None
        if previous is not None and previous.failure.position == position:
            trouble = previous
            trouble.failure = replace(
                trouble.failure, attempts=trouble.failure.attempts + 1, error=text, last_failed=now
            )
            trouble.event_attempts += 1 if at_fault else 0
        else:
            trouble = _Trouble(
                failure=Failure(
                    position=position,
                    aggregate_id=event.aggregate_id if event is not None else "",
                    event_type=event.event_type if event is not None else "",
                    status=RETRYING,
                    attempts=1,
                    error=text,
                    first_failed=now,
                    last_failed=now,
                ),
                event_attempts=1 if at_fault else 0,
                key=(None, ""),
            )
        self._trouble = trouble
        if event is not None and at_fault and trouble.event_attempts >= self.max_attempts:
            try:
                if self._set_aside(event, trouble):
                    return True
            except RunnerConflict:
                self._trouble = None
                return False
            except Exception as failure_to_set_aside:  # the database went away meanwhile: retry all later
                log.warning("could not set event %d aside: %s", event.position, describe(failure_to_set_aside))
        self._report(trouble, exc, at_fault)
        return False

    def _report(self, trouble: _Trouble, exc: BaseException, at_fault: bool) -> None:
        failure = trouble.failure
        key = (failure.position, failure.reason)
        if key != trouble.key:
            trouble.key = key
            if failure.position is None:
                log.warning(
                    "projections stalled after position %s: %s; retrying with backoff (up to %.0f s apart)",
                    self._applied_to if self._applied_to >= 0 else "?",
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
                self._record(failure)
            except Exception as exc2:
                log.debug("could not record the stall: %s", exc2)

    def _record(self, failure: Failure) -> None:
        with self.store.transaction() as tx:
            tx.execute(f"DELETE FROM {FAILURES} WHERE status = ? AND position <> ?", (RETRYING, failure.position))
            self._upsert(tx, failure)
        self._clear_retrying = True

    def _upsert(self, tx: Tx, failure: Failure) -> None:
        tx.execute(
            f"INSERT INTO {FAILURES} (position, aggregate_id, event_type, status, attempts, error,"
            " first_failed, last_failed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (position) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,"
            " error = excluded.error, last_failed = excluded.last_failed",
            (
                failure.position,
                failure.aggregate_id,
                failure.event_type,
                failure.status,
                failure.attempts,
                failure.error,
                failure.first_failed,
                failure.last_failed,
            ),
        )

    def _set_aside(self, event: EventFailure, trouble: _Trouble) -> bool:
        """Move the position past the event and record it as set aside, in one transaction.
        False (and the runner stalls) when the events just before it were all set aside too."""
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
        self._applied_to = -1
        with self.store.transaction() as tx:
            in_a_row = tx.one(
                f"SELECT COUNT(*) AS n FROM {FAILURES} WHERE status <> ? AND position >= ? AND position < ?",
                (RETRYING, failure.position - MAX_SET_ASIDE_IN_A_ROW, failure.position),
            )
            if in_a_row is not None and int(in_a_row["n"]) >= MAX_SET_ASIDE_IN_A_ROW:
                trouble.failure = replace(
                    trouble.failure,
                    error=short_reason(
                        f"not set aside: the {MAX_SET_ASIDE_IN_A_ROW} events before it were set aside too, which "
                        "looks like a fault of the read models or the database, not of the events; "
                        f"fix it and restart. {trouble.failure.error}"
                    ),
                )
                return False
            moved = tx.execute(
                f"UPDATE {TRACKING} SET position = ? WHERE name = ? AND position = ?",
                (failure.position, RUNNER_NAME, event.start),
            )
            if moved != 1:
                raise RunnerConflict(f"position {event.start} was already passed by another runner")
            self._upsert(tx, failure)
            tx.announce(payload)
        self._applied_to = failure.position
        self._trouble = None
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

    # -- running in the background ---------------------------------------------

    def wake(self, position: int = 0) -> None:
        """New events were written: apply them now rather than at the next poll."""
        self._wake.set()

    def start(self, poll_interval: float = 0.05) -> None:
        self.setup()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(poll_interval,), name="projections", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self, poll_interval: float) -> None:
        while not self._stop.is_set():
            try:
                if self.store.try_lead("projections"):
                    self._catch_up(None, self._stop)
            except Exception as exc:  # keep following the log; a store hiccup must not end the runner
                self._failed(exc)
                self._stop.wait(self._backoff())
                continue
            self._wake.wait(poll_interval)
            self._wake.clear()
