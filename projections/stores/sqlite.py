"""The read models in the SQLite file the event store uses (WAL mode: readers never block)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from persistence import StoreConfig
from projections.stores.dialect import TIME_COLUMNS, Row, utc

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, so text order is time order


def _param(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc(value).strftime(_FORMAT)
    return value


def _row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    row = {}
    for (name, *_), value in zip(cursor.description, values, strict=True):
        if name in TIME_COLUMNS and isinstance(value, str):
            value = datetime.strptime(value, _FORMAT).replace(tzinfo=UTC)
        row[name] = value
    return row


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, [_param(p) for p in params]).rowcount

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """In-process SQLite has no round trip to save: written at once."""
        self.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self.conn.execute(sql, [_param(p) for p in params]).fetchall()

    def announce(self, payload: str) -> None:
        """SQLite has no NOTIFY: the runner broadcasts in-process after the commit."""


class SQLiteReadStore:
    backend = "sqlite"
    timestamp_type = "TEXT"
    bigint_type = "INTEGER"

    def __init__(self, config: StoreConfig) -> None:
        self.path = config.env["SQLITE_DBNAME"]
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._opened: list[sqlite3.Connection] = []

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.row_factory = _row
            self._local.conn = conn
            self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Tx]:
        conn = self._connect()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield _Tx(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._connect().execute(sql, [_param(p) for p in params]).fetchall()

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await asyncio.to_thread(self.read, sql, params)

    def try_lead(self, role: str) -> bool:
        """One process owns an SQLite file: it always leads."""
        return True

    async def listen(self, callback: Any) -> None:
        """Nothing to listen to: the runner in this process publishes directly."""
        return None

    async def open_async(self) -> None:
        return None

    async def close_async(self) -> None:
        return None

    def close(self) -> None:
        for conn in self._opened:
            conn.close()
        self._opened.clear()
        self._local = threading.local()
