"""The projection runner: follows the global log and keeps the read models in step.

Each batch of events is applied and the runner's position recorded in ONE
transaction, so a crash anywhere neither skips nor repeats an event. The update
of the position opens the transaction and is conditional on the position the batch
starts from, so two runners on one database can never both apply a batch.

No event can wedge it (see "When an event cannot be applied" in the README). A batch
that fails is applied again one event at a time, which pins the event that fails;
`projections.recovery` decides what then: retry with backoff, or, when the error is the
event's fault, set the event aside after `max_attempts`. `projections.failures` keeps
what could not be applied, for `/readyz` and `jobledger projections status`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from domain.history import History, Record
from domain.ledger import Ledger
from persistence.faults import is_unavailable
from projections import jobs, queues, tasks, workers
from projections.batch import Batch, Handler, RunnerMemory
from projections.failures import ACKNOWLEDGED, SET_ASIDE, Failure, Status, scrub
from projections.feed import Change, ChangeFeed
from projections.recovery import BACKOFF_INITIAL_S, BACKOFF_MAX_S, EventFailure, Recovery, RunnerConflict, blames_event
from projections.schema import DDL, NEWEST_COLUMNS, RUNNER_NAME, TABLES, TRACKING
from projections.stores import ReadStore, Tx

log = logging.getLogger("jobledger.projections")


def _handlers() -> dict[str, list[Handler]]:
    merged: dict[str, list[Handler]] = {}
    for module in (queues, jobs, tasks):
        for event_type, handler in module.HANDLERS.items():
            merged.setdefault(event_type, []).append(handler)
    return merged


HANDLERS = _handlers()


class ProjectionRunner:
    """Applies the log to the read models: `catch_up` or `rebuild` now, or `start` following
    it in a background thread (on one instance at a time: the store's leadership lock)."""

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
        self.recovery = Recovery(
            store, self.feed, max_attempts=max_attempts, backoff_initial=backoff_initial, backoff_max=backoff_max
        )
        self.history = History(ledger)
        self.before_commit: Callable[[Batch], None] | None = None  # a test's crash point
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.memory = RunnerMemory()
        self._applied_to = -1  # where this runner's last batch ended (its memory is of up to there)
        self._in_hook = False

    # -- tables ----------------------------------------------------------------

    def setup(self) -> None:
        """Create the read-model tables and the runner's position, if missing. Tables of an
        older version (without one of `NEWEST_COLUMNS`) are dropped: the runner rebuilds them from the log."""
        try:
            for table, column in NEWEST_COLUMNS:
                self.store.read(f"SELECT {column} FROM {table} WHERE 1 = 0")
        except Exception:
            log.info("read models missing or older than this version: creating them from the log")
            self.drop()
        with self.ledger.store.schema_lock(), self.store.transaction() as tx:
            for statement in DDL:
                tx.execute(statement.format(ts=self.store.timestamp_type, big=self.store.bigint_type))
            if tx.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (RUNNER_NAME,)) is None:
                tx.execute(f"INSERT INTO {TRACKING} (name, position) VALUES (?, 0)", (RUNNER_NAME,))
        self.feed.advance(self.position())

    def drop(self) -> None:
        self.memory.forget()
        self._applied_to = -1
        self.recovery.trouble = None
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
        return self.recovery.status(self.position(), self.ledger.position())

    def failures(self, statuses: tuple[str, ...] = (SET_ASIDE, ACKNOWLEDGED)) -> list[Failure]:
        """The events set aside (and the one being retried, if asked for), oldest first."""
        return self.recovery.table.listed(statuses)

    def set_aside_between(self, after: int, up_to: int) -> list[Failure]:
        return self.recovery.table.set_aside_between(after, up_to)

    def acknowledge(self, positions: list[int] | None = None) -> int:
        """Accept events set aside (all of them when `positions` is None): the read models
        stop saying they are degraded because of them. Returns how many were acknowledged."""
        return self.recovery.table.acknowledge(positions)

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
        clear_retrying = self.recovery.clear_retrying
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
                self.recovery.table.clear_retrying(tx, batch.last)
            if self.before_commit is not None:
                self._in_hook = True
                self.before_commit(batch)
                self._in_hook = False
            payload = batch.payload()
            tx.announce(payload)
        self._applied_to = batch.last
        self.recovery.progressed(batch.last, cleared=clear_retrying)
        self.feed.publish(Change.from_payload(payload))
        return len(records)

    def _apply(self, tx: Tx, records: list[Record]) -> Batch:
        batch = Batch(memory=self.memory)
        tasks.prime(tx, records, batch)
        jobs.prime(tx, records, batch)
        workers.tally(tx, records)  # reads the state the batch starts from: before the handlers
        for record in records:
            batch.saw(record)
            for handler in HANDLERS.get(record.type, ()):
                handler(tx, record, batch)
        jobs.roll_up(tx, batch.dirty_jobs)
        return batch

    def _step(self) -> int:
        """Pass the next batch: apply it whole, or when that fails, its events one at a time
        until the one that fails (raised as EventFailure). Returns how many were passed."""
        start = self._start()
        trouble = self.recovery.trouble
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
        fault is set aside after `max_attempts` (see `projections.recovery`). Returns how
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
                    pause.wait(self.recovery.backoff())
                continue
            if count == 0:
                if self.recovery.trouble is not None:  # it cleared with nothing left to apply (the store is back)
                    self.recovery.progressed(self.position(), cleared=False)
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

    def _failed(self, exc: BaseException) -> bool:
        """Note a failure (the recovery logs and records it), and set the event aside when
        its attempts are used up. True if it was set aside: the position moved past it."""
        event = self.recovery.failed(exc, self._applied_to)
        if event is None:
            return False
        self._applied_to = -1  # unless it moves past the event: read the position again
        if not self.recovery.set_aside(event):
            return False
        self._applied_to = event.position
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
                elif self.recovery.trouble is not None and self.recovery.trouble.failure.position is None:
                    # Another instance leads now: this one is retrying nothing (its trouble
                    # reading the store, from when it led, is not the read models' state).
                    self.recovery.trouble = None
            except Exception as exc:  # keep following the log; a store hiccup must not end the runner
                self._failed(exc)
                wait = self.recovery.backoff()
                # The store away: try again every second, to be back soon after it is.
                self._stop.wait(min(wait, 1.0) if is_unavailable(exc) else wait)
                continue
            self._wake.wait(poll_interval)
            self._wake.clear()
