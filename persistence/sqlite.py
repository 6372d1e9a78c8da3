"""The event store in an SQLite file: eventsourcing's SQLite recorders, the file in WAL
mode, and the two queries eventsourcing does not offer."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Mapping
from contextlib import AbstractContextManager
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder
from tenacity import retry, retry_if_exception, stop_after_delay, wait_random

from persistence import PositionedEvent, Storage

# SQLite refuses statements with more bound parameters than this (999 in older builds).
_MAX_PARAMETERS = 500


class SQLiteStorage(Storage):
    """`sqlite:///path`: one file holds the events (and the read models beside them)."""

    def prepare(self) -> None:
        _enable_wal(self.env["SQLITE_DBNAME"])

    def schema_lock(self) -> AbstractContextManager[None]:
        """Nothing to hold: SQLite's own write lock serialises table creation."""
        return contextlib.nullcontext()

    def select_events_after(self, recorder: ApplicationRecorder, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        assert isinstance(recorder, SQLiteApplicationRecorder)
        if not versions:
            return []
        by_hex = {uid.hex: version for uid, version in versions.items()}  # eventsourcing stores ids as hex
        hexes = list(by_hex)
        found: list[StoredEvent] = []
        with recorder.datastore.transaction(commit=False) as curs:
            for start in range(0, len(hexes), _MAX_PARAMETERS):
                chunk = hexes[start : start + _MAX_PARAMETERS]
                curs.execute(
                    f"SELECT originator_id, originator_version, topic, state FROM {recorder.events_table_name} "
                    f"WHERE originator_id IN ({','.join('?' * len(chunk))}) ORDER BY originator_id, originator_version",
                    chunk,
                )
                found += [
                    StoredEvent(
                        originator_id=recorder.convert_originator_id(row["originator_id"]),
                        originator_version=row["originator_version"],
                        topic=row["topic"],
                        state=row["state"],
                    )
                    for row in curs.fetchall()
                    if row["originator_version"] > by_hex[row["originator_id"]]
                ]
        return found

    def select_aggregate_positions(self, recorder: ApplicationRecorder, aggregate_id: UUID) -> list[PositionedEvent]:
        assert isinstance(recorder, SQLiteApplicationRecorder)
        sql = (
            f"SELECT rowid AS position, originator_id, originator_version, topic, state "
            f"FROM {recorder.events_table_name} WHERE originator_id = ? ORDER BY originator_version"
        )
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(sql, (aggregate_id.hex,))
            return [
                (row["position"], row["originator_id"], row["originator_version"], row["topic"], row["state"])
                for row in curs.fetchall()
            ]


def _enable_wal(path: str) -> None:
    """Switch a new SQLite file to WAL mode before eventsourcing opens it. The switch needs
    the file to itself and SQLite's busy timeout does not cover it, so instances opening a
    new file at the same moment failed with "database is locked" when eventsourcing's
    connections switched; once the file is in WAL mode, their switch changes nothing."""
    if path == ":memory:" or path.startswith("file:"):
        return
    _switch_to_wal(path)


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# Another instance holds the file for its own switch: a moment, so try again after a few
# milliseconds, for up to 30 s.
@retry(retry=retry_if_exception(_locked), stop=stop_after_delay(30), wait=wait_random(0.005, 0.05), reraise=True)
def _switch_to_wal(path: str) -> None:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
