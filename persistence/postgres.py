"""The event store in PostgreSQL: a gap-free application recorder, the schema and its lock,
and the two queries eventsourcing does not offer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

import psycopg
import psycopg_pool.base
from eventsourcing.persistence import ApplicationRecorder, InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
    PostgresFactory,
)
from psycopg.sql import SQL, Identifier, as_bytes

from persistence import PositionedEvent, Storage, StoreConfig
from persistence.faults import OutcomeUnknownError, db_timeout, within

# Connection failures: the pooled connection died (a restart of the server), or none could
# be had in time. eventsourcing wraps psycopg's as its own.
_DROPPED = (InterfaceError, OperationalError, psycopg.OperationalError, psycopg.InterfaceError)


# psycopg_pool waits 1, 2, 4, 8, ... s between attempts to reconnect (up to minutes): after a
# long outage the store would stay away long after PostgreSQL is back. Every second instead.
for _attempt in ("AttemptWithBackoff", "ConnectionAttempt"):  # its name in newer and older psycopg_pool
    if hasattr(psycopg_pool.base, _attempt):
        getattr(psycopg_pool.base, _attempt).DELAY_BACKOFF = 1.0


def _unretried(method: Any) -> Any:
    """eventsourcing's method without its own retries (ten, 0.2 s apart, each waiting for a
    connection for up to the pool's timeout: close to a minute of an outage per request)."""
    return getattr(method, "__wrapped__", method)


def conninfo(config: StoreConfig) -> dict[str, Any]:
    """psycopg's (and, by the same names, asyncpg's) connection arguments for `config`."""
    env = config.env
    return {
        "host": env["POSTGRES_HOST"],
        "port": int(env["POSTGRES_PORT"]),
        "user": env["POSTGRES_USER"],
        "password": env["POSTGRES_PASSWORD"] or None,
        "dbname": env["POSTGRES_DBNAME"],
    }


def connect(config: StoreConfig) -> psycopg.Connection[Any]:
    """A plain autocommit connection to the PostgreSQL database of `config`."""
    return psycopg.connect(**conninfo(config), autocommit=True, connect_timeout=10)


class PostgresStorage(Storage):
    """`postgresql://user:password@host:port/db?schema=s`: the events in `schema`, written
    by `GapFreePostgresApplicationRecorder`."""

    @property
    def schema(self) -> str:
        return self.env.get("POSTGRES_SCHEMA") or "public"

    def prepare(self) -> None:
        """Create the schema named in the URL, if it is missing."""
        if self.schema == "public":
            return
        with connect(self) as conn:
            conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(self.schema)))

    def schema_lock(self) -> AbstractContextManager[None]:
        """Several instances starting at once on an empty database would otherwise collide
        in CREATE TYPE / CREATE FUNCTION."""
        return self._advisory_lock(f"jobledger:schema:{self.schema}")

    @contextlib.contextmanager
    def _advisory_lock(self, key: str) -> Iterator[None]:
        with connect(self) as conn:
            conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))

    def select_events_after(self, recorder: ApplicationRecorder, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        assert isinstance(recorder, GapFreePostgresApplicationRecorder)
        if not versions:
            return []
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:  # autocommit: no BEGIN/ROLLBACK
            curs.execute(
                recorder.select_events_after_statement, (list(versions), list(versions.values())), prepare=True
            )
            return [
                StoredEvent(
                    originator_id=r["originator_id"],
                    originator_version=r["originator_version"],
                    topic=r["topic"],
                    state=bytes(r["state"]),
                )
                for r in curs.fetchall()
            ]

    def select_aggregate_positions(self, recorder: ApplicationRecorder, aggregate_id: UUID) -> list[PositionedEvent]:
        assert isinstance(recorder, GapFreePostgresApplicationRecorder)
        with recorder.datastore.get_connection() as conn, conn.cursor() as curs:  # autocommit: no BEGIN/ROLLBACK
            curs.execute(recorder.select_aggregate_positions_statement, (aggregate_id,), prepare=True)
            return [
                (r["position"], r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
                for r in curs.fetchall()
            ]


class GapFreePostgresApplicationRecorder(PostgresApplicationRecorder):
    """Numbers events max+1, max+2, ... under the table lock instead of from a sequence.

    A sequence hands out numbers that a failed insert (a version conflict) never
    uses, leaving gaps; audit tools read the log as gap-free, so under the
    EXCLUSIVE lock the recorder already takes, it counts on from the maximum.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.timeout = db_timeout()
        # One array per column rather than eventsourcing's array of a composite type:
        # psycopg dumps those without escaping every field of every event in Python.
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} AS t "
            "(originator_id, originator_version, topic, state, notification_id) "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state, "
            "  (SELECT COALESCE(MAX(notification_id), 0) FROM {schema}.{table}) + e.n "
            "FROM unnest(%s::uuid[], %s::int8[], %s::text[], %s::bytea[]) "
            "  WITH ORDINALITY AS e(originator_id, originator_version, topic, state, n) "
            "RETURNING notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
        # Fixed statements rendered once: psycopg renders a composed statement (quoting its
        # identifiers) again at every execution, a fifth of a small command's time.
        rendered: Any = self  # eventsourcing types these attributes as composed statements
        rendered.insert_events_statement = self.insert_events_statement.as_bytes()
        rendered.lock_table_statements = [as_bytes(statement) for statement in self.lock_table_statements]
        rendered.max_notification_id_statement = self.max_notification_id_statement.as_bytes()
        self.select_events_after_statement = (
            # LATERAL with OFFSET 0 (never flattened into a join): one index probe per
            # aggregate; as a plain join the planner may scan the whole table.
            SQL(
                "SELECT e.originator_id, e.originator_version, e.topic, e.state "
                "FROM unnest(%s::uuid[], %s::int8[]) AS w(id, version) "
                "CROSS JOIN LATERAL (SELECT * FROM {schema}.{table} x "
                "  WHERE x.originator_id = w.id AND x.originator_version > w.version OFFSET 0) e "
                "ORDER BY e.originator_id, e.originator_version"
            )
            .format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
            .as_bytes()
        )
        self.select_aggregate_positions_statement = (
            SQL(
                "SELECT notification_id AS position, originator_id, originator_version, topic, state "
                "FROM {schema}.{table} WHERE originator_id = %s ORDER BY originator_version"
            )
            .format(schema=Identifier(self.datastore.schema), table=Identifier(self.events_table_name))
            .as_bytes()
        )

    # -- bounded waits: an unreachable database is answered in `db_timeout()` seconds ------

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        return within(
            self.timeout, lambda: _unretried(PostgresApplicationRecorder.select_events)(self, *args, **kwargs), _DROPPED
        )

    def select_notifications(self, *args: Any, **kwargs: Any) -> Any:
        return within(
            self.timeout,
            lambda: _unretried(PostgresApplicationRecorder.select_notifications)(self, *args, **kwargs),
            _DROPPED,
        )

    def max_notification_id(self) -> Any:
        return within(self.timeout, lambda: _unretried(PostgresApplicationRecorder.max_notification_id)(self), _DROPPED)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert (see `_insert_once`), again while the connection fails before the commit
        (nothing was written), for up to `db_timeout()` seconds; a failure during the commit
        itself is OutcomeUnknownError, never retried: the events may be in the store."""
        return within(self.timeout, lambda: self._insert_once(stored_events, **kwargs), _DROPPED)

    def _insert_once(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Insert in one pipelined transaction, and read the new positions back with a fetch.

        eventsourcing ends its pipeline with `Pipeline.sync()`, which deadlocked on events of
        several MB (psycopg 3.3.9): the connection is non-blocking, so libpq sends what the
        socket takes and keeps the rest of a large INSERT in its output buffer; psycopg's
        `pipeline_communicate` stops once its queue of commands is empty even when the last
        `PQflush()` said data is left, and `sync()` then only waits for results. PostgreSQL,
        holding the EXCLUSIVE lock of `LOCK TABLE`, waited for the rest of the INSERT
        (ClientRead) and the client waited for its answer, for ever, and so did every other
        writer behind the lock. Events up to the few MB the kernel's socket buffers take at
        once went through, which is why 3 MB worked and 6 MB did not.

        A fetch in pipeline mode sends a flush request and then flushes the output buffer
        until libpq reports it empty before it waits for results, so nothing is left behind;
        it is still one round trip (plus the COMMIT), and a version conflict still raises
        IntegrityError here, from the INSERT's result."""
        if not stored_events:
            return None
        failure: Exception | None = None
        notification_ids: list[int] | None = None
        committing = committed = False
        try:
            with self.datastore.get_connection() as conn:
                with conn.pipeline(), conn.transaction(), conn.cursor() as curs:
                    try:
                        self._insert_stored_events(curs, stored_events, **kwargs)
                        notification_ids = [row["notification_id"] for row in curs.fetchall()]
                    except Exception as exc:  # raised after the pipeline ends, as eventsourcing does
                        failure = exc
                    committing = failure is None
                committed = committing  # the COMMIT returned: the events are in
                if failure is not None:
                    raise failure  # inside: eventsourcing translates the driver's errors
        except _DROPPED as exc:
            if committed:  # only giving the connection back failed: the write stands
                return notification_ids
            if committing:  # the COMMIT was sent; whether it arrived is not known
                raise OutcomeUnknownError() from exc
            raise
        return notification_ids

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        """Lock the table (which keeps positions in commit order), then insert. eventsourcing
        also sends a NOTIFY on its own channel here; nothing listens to it (the projections
        announce their batches on theirs), and a NOTIFY serialises commits in PostgreSQL."""
        self._lock_table(curs)
        curs.execute(
            self.insert_events_statement,
            (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            ),
            prepare=True,
        )


class BoundedPostgresAggregateRecorder(PostgresAggregateRecorder):
    """The snapshots' recorder, with the same bounded waits as the events' (see
    `GapFreePostgresApplicationRecorder`): eventsourcing's own retries would hold a request
    for close to twenty seconds of an outage."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
        self.timeout = db_timeout()

    def select_events(self, *args: Any, **kwargs: Any) -> Any:
        plain = _unretried(PostgresAggregateRecorder.select_events)
        return within(self.timeout, lambda: plain(self, *args, **kwargs), _DROPPED)

    def insert_events(self, *args: Any, **kwargs: Any) -> Any:
        plain = _unretried(PostgresAggregateRecorder.insert_events)
        return within(self.timeout, lambda: plain(self, *args, **kwargs), _DROPPED)


class BoundedPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL infrastructure, with the snapshots' recorder bounded."""

    aggregate_recorder_class = BoundedPostgresAggregateRecorder
