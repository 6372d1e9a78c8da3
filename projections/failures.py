"""The events the projection runner could not apply, as the failures table keeps them.

`jl_projection_failures` has a row for the event the runner retries now (status
'retrying': it is stalled) and one for each event it set aside ('set_aside': the read
models are degraded) until an operator accepts the gap ('acknowledged') or a rebuild
applies it. Every instance reads it for `/readyz` and `jobledger projections status`.
What the runner does about a failure is in `projections.recovery`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projections.schema import FAILURES
from projections.stores import ReadStore, Tx

RETRYING, SET_ASIDE, ACKNOWLEDGED = "retrying", "set_aside", "acknowledged"
MAX_REASON_TEXT = 200


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


def short_reason(error: str) -> str:
    first = scrub(error).strip().splitlines()[0] if error.strip() else "unknown error"
    return first if len(first) <= MAX_REASON_TEXT else first[: MAX_REASON_TEXT - 1] + "…"


def now() -> str:
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


class FailuresTable:
    """Every statement on `jl_projection_failures`."""

    def __init__(self, store: ReadStore) -> None:
        self.store = store

    def counts(self) -> dict[str, int]:
        """How many rows of each status."""
        rows = self.store.read(f"SELECT status, COUNT(*) AS n FROM {FAILURES} GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    def retrying_after(self, position: int) -> Failure | None:
        """The event some runner retries now, if it is past `position` (one before is stale)."""
        rows = self.store.read(
            f"SELECT * FROM {FAILURES} WHERE status = ? AND position > ? ORDER BY position LIMIT 1",
            (RETRYING, position),
        )
        return _failure(rows[0]) if rows else None

    def newest_set_aside(self) -> Failure | None:
        rows = self.store.read(
            f"SELECT * FROM {FAILURES} WHERE status = ? ORDER BY position DESC LIMIT 1", (SET_ASIDE,)
        )
        return _failure(rows[0]) if rows else None

    def listed(self, statuses: Sequence[str]) -> list[Failure]:
        """The rows of these statuses, oldest first."""
        marks = ", ".join("?" * len(statuses))
        rows = self.store.read(f"SELECT * FROM {FAILURES} WHERE status IN ({marks}) ORDER BY position", tuple(statuses))
        return [_failure(row) for row in rows]

    def set_aside_between(self, after: int, up_to: int) -> list[Failure]:
        rows = self.store.read(
            f"SELECT * FROM {FAILURES} WHERE status <> ? AND position > ? AND position <= ? ORDER BY position",
            (RETRYING, after, up_to),
        )
        return [_failure(row) for row in rows]

    def acknowledge(self, positions: list[int] | None) -> int:
        """Mark events set aside as acknowledged (all when `positions` is None); how many were."""
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

    def record_retrying(self, failure: Failure) -> None:
        """The event retried now, in place of any retried before."""
        with self.store.transaction() as tx:
            tx.execute(f"DELETE FROM {FAILURES} WHERE status = ? AND position <> ?", (RETRYING, failure.position))
            self.upsert(tx, failure)

    def clear_retrying(self, tx: Tx, up_to: int) -> None:
        """In a batch that applied up to `up_to`: the event retried before applied at last."""
        tx.later(f"DELETE FROM {FAILURES} WHERE status = ? AND position <= ?", (RETRYING, up_to))

    def set_aside_just_before(self, tx: Tx, position: int, window: int) -> int:
        """How many of the `window` events before `position` were set aside."""
        row = tx.one(
            f"SELECT COUNT(*) AS n FROM {FAILURES} WHERE status <> ? AND position >= ? AND position < ?",
            (RETRYING, position - window, position),
        )
        return int(row["n"]) if row is not None else 0

    def upsert(self, tx: Tx, failure: Failure) -> None:
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
