"""Where the event store lives: the database URL, mapped onto eventsourcing's recorders."""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg.sql import SQL, Identifier, as_bytes

from domain.errors import ValidationError

DEFAULT_DATABASE_URL = "sqlite:///jobledger.db"
Backend = Literal["sqlite", "postgres"]


@dataclass(frozen=True)
class StoreConfig:
    """A parsed `JOBLEDGER_DATABASE_URL`: the backend and eventsourcing's settings for it."""

    url: str
    backend: Backend
    env: dict[str, str] = field(default_factory=dict)

    @property
    def events_table(self) -> str:
        return "stored_events"

    @property
    def display(self) -> str:
        """The URL without its password, for logs."""
        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url


def database_url_from_env() -> str:
    return os.environ.get("JOBLEDGER_DATABASE_URL") or DEFAULT_DATABASE_URL


def parse_database_url(url: str) -> StoreConfig:
    """`sqlite:///path/to/file.db` or `postgresql://user:password@host:port/db?schema=s`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(url[len("sqlite:///") :]) if url.startswith("sqlite:///") else ""
        if not path:
            raise ValidationError("JOBLEDGER_DATABASE_URL", "an SQLite URL looks like sqlite:///path/to/jobledger.db")
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
        }
        return StoreConfig(url=url, backend="sqlite", env=env)
    if parts.scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        query = parse_qs(parts.query)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": unquote(parts.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parts.password or ""),
            "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
            "POSTGRES_POOL_SIZE": query.get("pool_size", ["5"])[0],
            "POSTGRES_MAX_OVERFLOW": "10",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "POSTGRES_CONNECT_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": f"{__name__}:GapFreePostgresApplicationRecorder",
        }
        return StoreConfig(url=url, backend="postgres", env=env)
    raise ValidationError(
        "JOBLEDGER_DATABASE_URL",
        f"unsupported scheme {parts.scheme!r}: use sqlite:///path or postgresql://user@host/db",
    )


def connect(config: StoreConfig) -> Any:
    """A plain autocommit connection to the PostgreSQL database of `config`."""
    import psycopg

    env = config.env
    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"] or None,
        dbname=env["POSTGRES_DBNAME"],
        autocommit=True,
        connect_timeout=10,
    )


@contextlib.contextmanager
def schema_lock(config: StoreConfig) -> Iterator[None]:
    """Serialise table creation across processes: several instances starting at once on an
    empty PostgreSQL database would otherwise collide in CREATE TYPE / CREATE FUNCTION."""
    if config.backend != "postgres":
        yield
        return
    env = config.env
    with connect(config) as conn:
        key = f"jobledger:schema:{env.get('POSTGRES_SCHEMA', 'public')}"
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (key,))


def ensure_schema(config: StoreConfig) -> None:
    """Create the PostgreSQL schema named in the URL, if it is missing; put an SQLite file
    in WAL mode."""
    if config.backend == "sqlite":
        _enable_wal(config.env["SQLITE_DBNAME"])
        return
    schema = config.env.get("POSTGRES_SCHEMA", "public")
    if schema == "public":
        return
    with connect(config) as conn:
        conn.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(schema)))


def _enable_wal(path: str) -> None:
    """Switch a new SQLite file to WAL mode before eventsourcing opens it. The switch needs
    the file to itself and SQLite's busy timeout does not cover it, so instances opening a
    new file at the same moment failed with "database is locked" when eventsourcing's
    connections switched; once the file is in WAL mode, their switch changes nothing."""
    if path == ":memory:" or path.startswith("file:"):
        return
    deadline = time.monotonic() + 30
    while True:
        try:
            with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.005, 0.05))


class GapFreePostgresApplicationRecorder(PostgresApplicationRecorder):
    """Numbers events max+1, max+2, ... under the table lock instead of from a sequence.

    A sequence hands out numbers that a failed insert (a version conflict) never
    uses, leaving gaps; audit tools read the log as gap-free, so under the
    EXCLUSIVE lock the recorder already takes, it counts on from the maximum.
    """

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events"):
        super().__init__(datastore, events_table_name=events_table_name)
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


def select_aggregate_positions(recorder: Any, backend: Backend, aggregate_id: UUID) -> list[Any]:
    """Rows (position, originator_id, version, topic, state) of one aggregate, oldest first.

    eventsourcing's `select_events` leaves out the global position, which the
    history needs, so this asks the events table directly.
    """
    table = recorder.events_table_name
    if backend == "sqlite":
        sql = (
            f"SELECT rowid AS position, originator_id, originator_version, topic, state "
            f"FROM {table} WHERE originator_id = ? ORDER BY originator_version"
        )
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(sql, (aggregate_id.hex,))  # eventsourcing stores SQLite ids as hex
            return [tuple(row) for row in curs.fetchall()]
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:  # autocommit: no BEGIN/ROLLBACK
        curs.execute(recorder.select_aggregate_positions_statement, (aggregate_id,), prepare=True)
        return [
            (r["position"], r["originator_id"], r["originator_version"], r["topic"], bytes(r["state"]))
            for r in curs.fetchall()
        ]


def select_events_after(recorder: Any, backend: Backend, versions: dict[UUID, int]) -> list[StoredEvent]:
    """The events of many aggregates newer than the version given for each, in one query
    (eventsourcing asks one aggregate at a time: a round trip per task of a claim)."""
    if not versions:
        return []
    table = recorder.events_table_name
    if backend == "sqlite":
        by_hex = {uid.hex: version for uid, version in versions.items()}
        found: list[StoredEvent] = []
        hexes = list(by_hex)
        with recorder.datastore.transaction(commit=False) as curs:
            for start in range(0, len(hexes), 500):  # SQLite's bound-parameter limit
                chunk = hexes[start : start + 500]
                curs.execute(
                    f"SELECT originator_id, originator_version, topic, state FROM {table} "
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
    with recorder.datastore.get_connection() as conn, conn.cursor() as curs:  # autocommit: no BEGIN/ROLLBACK
        curs.execute(recorder.select_events_after_statement, (list(versions), list(versions.values())), prepare=True)
        return [
            StoredEvent(
                originator_id=r["originator_id"],
                originator_version=r["originator_version"],
                topic=r["topic"],
                state=bytes(r["state"]),
            )
            for r in curs.fetchall()
        ]
