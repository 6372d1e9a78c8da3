"""The clock: time-driven moves recorded as events, so a replay lands in the same place.

Finished jobs leave the ACTIVE list after the grace period (Job.Retired) and are
archived later (Job.Archived). The clock finds candidates in the read model and
the domain re-checks each one, so a stale read model can delay a move, never
make a wrong one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from domain.ledger import Ledger
from projections.schema import JOBS, QUEUES, RUNNER_NAME, TASKS, THROUGHPUT, TRACKING, WORKERS
from projections.stores import ReadStore

log = logging.getLogger("jobledger.clock")
CLOCK_ACTOR = "jobledger-clock"
BATCH = 200
# The read models' tables churn (a task row is rewritten at every claim, heartbeat and
# completion). On PostgreSQL the leading clock vacuums them this often, so that dead rows
# do not pile up where autovacuum is off (as on this project's CI machine) or too slow.
VACUUM_EVERY_S = 60.0
CHURNING = (TASKS, JOBS, QUEUES, TRACKING, WORKERS, THROUGHPUT)


class Clock:
    def __init__(
        self,
        ledger: Ledger,
        store: ReadStore,
        finished_grace_s: float,
        archive_after_s: float,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.grace = timedelta(seconds=finished_grace_s)
        self.archive_after = timedelta(seconds=archive_after_s)
        self.is_leader = is_leader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self, now: datetime | None = None) -> tuple[int, int]:
        """Make every move that is due at `now`; returns (retired, archived)."""
        now = now or datetime.now(UTC)
        self.expire_leases(now)
        retired = self._move("ACTIVE", now - self.grace, self.ledger.jobs.retire)
        archived = self._move("FINISHED", now - self.archive_after, self.ledger.jobs.archive)
        return retired, archived

    def expire_leases(self, now: datetime) -> int:
        """Leases past their deadline end: their tasks are queued again (or fail)."""
        due = self.store.read(
            f"SELECT id FROM {TASKS} WHERE lease_expires IS NOT NULL AND lease_expires < ?"
            " ORDER BY lease_expires LIMIT ?",
            (now, BATCH),
        )
        if not due:
            return 0
        written = self.ledger.dispatch.expire_leases([row["id"] for row in due], now, actor=CLOCK_ACTOR)
        return len(written.ids)

    def _move(self, phase: str, cutoff: datetime, command: Callable[..., object]) -> int:
        moved = 0
        while True:
            due = self.store.read(
                f"SELECT id FROM {JOBS} WHERE phase = ? AND finished IS NOT NULL AND finished <= ?"
                " ORDER BY finished LIMIT ?",
                (phase, cutoff, BATCH),
            )
            if not due:
                return moved
            written = command([row["id"] for row in due], cutoff, actor=CLOCK_ACTOR)
            count = len(written.ids)  # type: ignore[attr-defined]
            moved += count
            if count == 0 or len(due) < BATCH:
                return moved
            # The read model has not caught up with our own moves yet: wait for it.
            self._await_projection(written.position)  # type: ignore[attr-defined]

    def _await_projection(self, position: int) -> None:
        for _ in range(100):
            rows = self.store.read(f"SELECT position FROM {TRACKING} WHERE name = ?", (RUNNER_NAME,))
            if rows and int(rows[0]["position"]) >= position:
                return
            self._stop.wait(0.05)

    def start(self, interval: float = 0.5) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(interval,), name="clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self, interval: float) -> None:
        vacuumed = time.monotonic()
        while not self._stop.wait(interval):
            try:
                if self.is_leader():
                    self.tick()
                    if time.monotonic() - vacuumed >= VACUUM_EVERY_S:
                        vacuumed = time.monotonic()
                        self.vacuum()
            except Exception:  # a failed tick is retried at the next one
                log.exception("clock tick failed; retrying in %.1f s", interval)

    def vacuum(self) -> None:
        """Reclaim the dead rows of the churning read-model tables (PostgreSQL; SQLite
        reuses its free pages by itself)."""
        vacuum = getattr(self.store, "vacuum", None)
        if vacuum is None:
            return
        started = time.monotonic()
        vacuum((*CHURNING, *self._event_tables()))
        log.info("vacuumed the read models and the event log in %.2f s", time.monotonic() - started)

    def _event_tables(self) -> list[str]:
        """The event store's table, whose dead rows (inserts rolled back by a lost race or an
        outage) no one else reclaims where autovacuum is off; cheap, as VACUUM skips the pages
        of an append-only table that are all visible."""
        recorder = getattr(self.ledger, "recorder", None)
        table = getattr(recorder, "events_table_name", None)
        schema = getattr(getattr(recorder, "datastore", None), "schema", None)
        if not table or not schema:
            return []
        return [f'"{schema}"."{table}"']
