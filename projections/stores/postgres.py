"""The read models in PostgreSQL: psycopg for the runner's transactions, asyncpg for queries."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import asyncpg
import psycopg
from psycopg.generators import send
from psycopg.rows import dict_row

from persistence import StoreConfig
from persistence.faults import db_timeout
from persistence.postgres import conninfo
from projections.stores.dialect import Row, numbered

log = logging.getLogger("jobledger.store")

LEASE_CHECK_S = 1.0  # how often a held leadership's connection is asked whether it lives
CONNECT_TIMEOUT_S = max(1, round(db_timeout()))
QUERY_TIMEOUT_S = 30.0  # a read-model query that runs longer is cut (and answered UNAVAILABLE)


async def _as_it_is(connection: asyncpg.Connection) -> None:
    """A read-pool connection returns to the pool unchanged (see `open_async`)."""


def channel_for(schema: str) -> str:
    """One NOTIFY channel per store: stores in other schemas of the database stay apart."""
    return f"jobledger_changes_{schema}"[:63]


class _Tx:
    """A transaction in pipeline mode: statements go out without waiting for each other's
    answers; only a statement whose answer is needed (a row count, rows) waits."""

    def __init__(self, cursor: psycopg.Cursor[Row], channel: str, pipeline: psycopg.Pipeline) -> None:
        self.cursor = cursor
        self.channel = channel
        self.pipeline = pipeline
        self._later: list[tuple[str, list[Any]]] = []

    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._later.append((numbered(sql, "%s"), list(params)))

    def flush(self) -> None:
        """Send the writes held by `later`: runs of one statement go as one executemany,
        which psycopg pipelines (one round trip instead of one per task)."""
        held, self._later = self._later, []
        for sql, run in itertools.groupby(held, key=lambda item: item[0]):
            rows = [params for _, params in run]
            if len(rows) == 1:
                self.cursor.execute(sql, rows[0])
            else:
                self.cursor.executemany(sql, rows)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.flush()
        self.cursor.execute(numbered(sql, "%s"), list(params))
        self.send_all()
        self.pipeline.sync()
        return self.cursor.rowcount

    def send_all(self) -> None:
        """Push every queued statement out to the server before waiting for answers.

        psycopg 3.3's `Pipeline.sync()` (and a COMMIT in pipeline mode) may stop sending
        once its queue of commands is empty although libpq still holds the tail of a large
        statement (several MB of task rows) in its output buffer; it then waits for answers
        the server cannot give before it has the whole statement, for ever (the same bug
        as the event insert's, see persistence/postgres.py). Flushing first leaves nothing behind."""
        conn = self.cursor.connection
        with conn.lock:
            conn.wait(send(conn.pgconn))

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.flush()
        self.cursor.execute(numbered(sql, "%s"), list(params))
        return self.cursor.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.flush()
        self.cursor.execute(numbered(sql, "%s"), list(params))
        return self.cursor.fetchall()

    def announce(self, payload: str) -> None:
        """NOTIFY is transactional: listeners hear it when, and only if, the batch commits."""
        self.flush()
        self.cursor.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))


class PostgresReadStore:
    backend = "postgres"
    timestamp_type = "TIMESTAMPTZ"
    bigint_type = "BIGINT"

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.schema = config.env.get("POSTGRES_SCHEMA") or "public"
        self._local = threading.local()
        self._opened: list[psycopg.Connection[Row]] = []
        self._pool: asyncpg.Pool | None = None
        self._leases: dict[str, psycopg.Connection[Any]] = {}
        self._lease_checked: dict[str, float] = {}

    def _connect(self) -> psycopg.Connection[Row]:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(
                **conninfo(self.config), row_factory=dict_row, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
            )
            conn.execute(f'SET search_path TO "{self.schema}"')
            # The read models are derived: a crash may lose their last moments, never mix
            # them up (the position commits with the rows), and the runner re-applies them
            # from the event store. The events themselves are committed synchronously.
            conn.execute("SET synchronous_commit TO off")
            self._local.conn = conn
            self._opened.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[_Tx]:
        conn = self._connect()
        with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as cursor:
            tx = _Tx(cursor, channel_for(self.schema), pipeline)
            yield tx
            tx.flush()
            tx.send_all()

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._connect().cursor() as cursor:
            cursor.execute(numbered(sql, "%s"), list(params))
            return cursor.fetchall()

    def vacuum(self, tables: Sequence[str]) -> None:
        """VACUUM (ANALYZE) each table (outside any transaction, on this thread's connection)."""
        conn = self._connect()
        for table in tables:
            conn.execute(f"VACUUM (ANALYZE) {table}")  # type: ignore[arg-type]

    def try_lead(self, role: str) -> bool:
        """Hold PostgreSQL's advisory lock for `role` on a connection of its own: exactly one
        instance leads; when it dies its connection closes and another takes over.

        A held lock is trusted only while its connection answers (asked at most every
        LEASE_CHECK_S): after a restart of PostgreSQL the connection looks open (`closed`
        stays false) although the server has forgotten it and its lock, and another
        instance may lead already. A dead one is given up, and the lock sought anew."""
        conn = self._leases.get(role)
        if conn is not None:
            if time.monotonic() - self._lease_checked.get(role, 0.0) < LEASE_CHECK_S:
                return True
            try:
                conn.execute("SELECT 1")
                self._lease_checked[role] = time.monotonic()
                return True
            except psycopg.Error as exc:
                log.warning("lost the %s lead: its connection failed (%s); seeking it again", role, type(exc).__name__)
                self._leases.pop(role, None)
                with contextlib.suppress(Exception):
                    conn.close()
        try:
            conn = psycopg.connect(**conninfo(self.config), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
            key = f"jobledger:{self.schema}:{role}"
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,)).fetchone()
        except psycopg.Error:
            return False  # the database is unreachable: nobody here leads until it is back
        if row and row[0]:
            self._leases[role] = conn
            self._lease_checked[role] = time.monotonic()
            log.info("leading the %s", role)
            return True
        conn.close()
        return False

    def leads(self, role: str) -> bool:
        """Whether this instance held the `role` lock at its last check."""
        return role in self._leases

    async def open_async(self) -> None:
        if self._pool is None:
            info = conninfo(self.config)
            self._pool = await asyncpg.create_pool(
                host=info["host"],
                port=info["port"],
                user=info["user"],
                password=info["password"],
                database=info["dbname"],
                min_size=1,
                max_size=10,
                server_settings={"search_path": self.schema},
                timeout=db_timeout(),  # to connect
                # asyncpg resets a connection (RESET ALL, UNLISTEN, ...) each time it goes back:
                # a round trip per query, 5% of a page. These connections only ever run single
                # SELECTs, with nothing to reset, so they go back as they are.
                reset=_as_it_is,
            )

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        if self._pool is None:
            await self.open_async()
        assert self._pool is not None
        # An unreachable database is answered within db_timeout() (UNAVAILABLE), not in minutes.
        async with self._pool.acquire(timeout=db_timeout()) as conn:
            rows = await conn.fetch(numbered(sql, "$"), *params, timeout=QUERY_TIMEOUT_S)
        return [dict(r) for r in rows]

    async def close_async(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def listen(self, callback: Any) -> Any:
        """A connection that calls `callback(payload)` on each announcement; close it to stop."""
        info = conninfo(self.config)
        conn = await asyncpg.connect(
            host=info["host"],
            port=info["port"],
            user=info["user"],
            password=info["password"],
            database=info["dbname"],
            timeout=CONNECT_TIMEOUT_S,
        )
        await conn.add_listener(channel_for(self.schema), lambda _c, _pid, _ch, payload: callback(payload))
        return conn

    def close(self) -> None:
        for conn in [*self._opened, *self._leases.values()]:
            conn.close()
        self._opened.clear()
        self._leases.clear()
        self._local = threading.local()
