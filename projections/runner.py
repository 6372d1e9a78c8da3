"""The projection runner: follows the global log and keeps the read models in step.

Each batch of events is applied and the runner's position recorded in ONE
transaction, so a crash anywhere neither skips nor repeats an event. The update
of the position opens the transaction and is conditional on the position the batch
starts from, so two runners on one database can never both apply a batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from domain.history import History, Record
from domain.ledger import Ledger
from domain.storage import schema_lock
from projections import jobs, queues, tasks
from projections.batch import Batch, Handler, RunnerMemory
from projections.feed import Change, ChangeFeed
from projections.schema import DDL, RUNNER_NAME, TABLES, TRACKING
from projections.stores import ReadStore, Tx

log = logging.getLogger("jobledger.projections")


def _handlers() -> dict[str, list[Handler]]:
    merged: dict[str, list[Handler]] = {}
    for module in (queues, jobs, tasks):
        for event_type, handler in module.HANDLERS.items():
            merged.setdefault(event_type, []).append(handler)
    return merged


HANDLERS = _handlers()


class RunnerConflict(Exception):
    """Another runner applied this batch first; ours was rolled back."""


@dataclass(frozen=True)
class Status:
    position: int
    head: int

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


class ProjectionRunner:
    def __init__(
        self,
        ledger: Ledger,
        store: ReadStore,
        feed: ChangeFeed | None = None,
        batch_size: int = 1000,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.feed = feed or ChangeFeed()
        self.batch_size = batch_size
        self.history = History(ledger)
        self.before_commit: Callable[[Batch], None] | None = None  # a test's crash point
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.memory = RunnerMemory()
        self._applied_to = -1  # where this runner's last batch ended (its memory is of up to there)

    # -- tables ----------------------------------------------------------------

    def setup(self) -> None:
        """Create the read-model tables and the runner's position, if missing."""
        with schema_lock(self.ledger.store), self.store.transaction() as tx:
            for statement in DDL:
                tx.execute(statement.format(ts=self.store.timestamp_type, big=self.store.bigint_type))
            if tx.one(f"SELECT position FROM {TRACKING} WHERE name = ?", (RUNNER_NAME,)) is None:
                tx.execute(f"INSERT INTO {TRACKING} (name, position) VALUES (?, 0)", (RUNNER_NAME,))
        self.feed.advance(self.position())

    def drop(self) -> None:
        self.memory.forget()
        self._applied_to = -1
        with self.store.transaction() as tx:
            for table in TABLES:
                tx.execute(f"DROP TABLE IF EXISTS {table}")
        self.feed.position = 0

    def position(self) -> int:
        rows = self.store.read(f"SELECT position FROM {TRACKING} WHERE name = ?", (RUNNER_NAME,))
        return int(rows[0]["position"]) if rows else 0

    def status(self) -> Status:
        return Status(position=self.position(), head=self.ledger.position())

    # -- applying --------------------------------------------------------------

    def run_batch(self) -> int:
        """Apply the next batch of events; returns how many were applied (0: caught up).

        The events are read before the write transaction opens: on SQLite a writer
        must never wait for the event store while it holds the database's write lock."""
        # Where our last batch ended is where the next one starts, unless another runner
        # applied some since: then the conditional update that opens the transaction finds
        # another position and refuses the batch before anything is applied, and the next
        # attempt reads the position (and forgets what it remembered of tasks).
        start = self._applied_to if self._applied_to >= 0 else self.position()
        records = self.history.read(start, self.batch_size)
        if not records:
            return 0
        if start != self._applied_to:
            self.memory.forget()
        self._applied_to = -1
        with self.store.transaction() as tx:
            # First, so that the row lock also makes a second runner wait for this batch.
            moved = tx.execute(
                f"UPDATE {TRACKING} SET position = ? WHERE name = ? AND position = ?",
                (records[-1].position, RUNNER_NAME, start),
            )
            if moved != 1:
                raise RunnerConflict(f"position {start} was already applied by another runner")
            batch = self._apply(tx, records)
            if self.before_commit is not None:
                self.before_commit(batch)
            payload = batch.payload()
            tx.announce(payload)
        self._applied_to = batch.last
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

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything in the store now; `progress(done, total)` after each batch."""
        applied, total = 0, self.status().lag if progress is not None else 0
        while True:
            try:
                count = self.run_batch()
            except RunnerConflict:
                continue
            if count == 0:
                return applied
            applied += count
            if progress is not None:
                progress(applied, max(total, applied))

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Drop the read models and replay the whole log into them."""
        self.drop()
        self.setup()
        return self.catch_up(progress)

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
        failures = 0
        while not self._stop.is_set():
            try:
                if self.store.try_lead("projections"):
                    self.catch_up()
                failures = 0
            except Exception:  # keep following the log; a store hiccup must not end the runner
                failures += 1
                log.exception("projection batch failed (attempt %d); retrying", failures)
                time.sleep(min(5.0, 0.1 * 2**failures))
                continue
            self._wake.wait(poll_interval)
            self._wake.clear()
