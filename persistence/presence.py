"""Whether the store a database URL names can be used, looked at before a command opens it.

Opening a store creates what is missing (an SQLite file, a PostgreSQL schema and its
tables), and a store that cannot be opened fails deep in a driver. The operator's commands
ask here first: a command that only reads (`projections status`, `events export`, tokens
on an existing store) never creates a store, and a missing file, a folder that cannot hold
one or a PostgreSQL that does not answer is one line saying which and what to do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from persistence.urls import SQLITE_FORMS, StorageError, StoreConfig

CONNECT_TIMEOUT_S = 5  # how long to wait for PostgreSQL before saying it cannot be reached
# Every store holds its events in a table of this ending (eventsourcing's `stored_events`,
# or `<application>_events`).
EVENTS_TABLE = "%events"


class StoreUnusable(StorageError):
    """The store cannot be used as it is; the message says which store, why and what to do."""


def check_store(config: StoreConfig, *, create: bool) -> None:
    """Raise StoreUnusable unless the store `config` names is there (`create`: or can be
    made there). The in-memory store is always there."""
    if config.backend == "sqlite":
        _check_sqlite(config, create=create)
    elif config.backend == "postgres":
        _check_postgres(config, create=create)


def _check_sqlite(config: StoreConfig, *, create: bool) -> None:
    path = config.sqlite_path
    assert path is not None
    if path.is_dir():
        raise StoreUnusable(
            f"{path} is a folder, not an SQLite file: name a file in it, e.g. sqlite://{path}/jobledger.db"
        )
    if not path.exists():
        _check_not_the_old_reading(config, path)
    if path.exists():
        if not create:
            _check_sqlite_holds_a_store(path)
        elif not os.access(path, os.R_OK | os.W_OK):
            raise StoreUnusable(f"cannot open the SQLite file {path} to write: check its permissions")
        return
    if not create:
        raise StoreUnusable(
            f"no store at {path} ({config.url}), and this command creates none: give the store's "
            "--database-url or $JOBLEDGER_DATABASE_URL (`jobledger serve` creates a store on its first start)"
        )
    folder = path.parent
    if not folder.is_dir():
        raise StoreUnusable(
            f"cannot create the SQLite file {path}: the folder {folder} does not exist; create it "
            f"(mkdir -p {folder}) or name a file in a folder that exists{_root_hint(config, path)}"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreUnusable(
            f"cannot create the SQLite file {path}: you may not write in {folder}; "
            f"name a file in a folder of yours{_root_hint(config, path)}"
        )


def _check_not_the_old_reading(config: StoreConfig, path: Path) -> None:
    """`sqlite:///data/x.db` once meant ./data/x.db. When that file is here and /data/x.db is
    not, the URL was written for the old reading: say so rather than open (or make) another
    store."""
    if not config.url.startswith("sqlite:///") or config.url.startswith("sqlite:////"):
        return
    relative = Path(str(path).lstrip("/"))
    if relative.is_file():
        raise StoreUnusable(
            f"{config.url} names {path}, which does not exist; {relative.absolute()} does: a file in "
            f"the current folder is sqlite:{relative} ({SQLITE_FORMS})"
        )


def _root_hint(config: StoreConfig, path: Path) -> str:
    """`sqlite:///jobledger.db` read the old way meant ./jobledger.db: say how to write that."""
    if path.parent != Path(path.anchor) or not config.url.startswith("sqlite:///"):
        return ""
    return f" ({config.url} names {path}; a file in the current folder is sqlite:{path.name}; {SQLITE_FORMS})"


def _check_sqlite_holds_a_store(path: Path) -> None:
    """An existing file that is an SQLite database with an events table (opened read-only)."""
    try:
        with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=5) as db:
            found = db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?", (EVENTS_TABLE,)
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StoreUnusable(f"cannot read {path} as an SQLite store: {exc}") from None
    if found is None:
        raise StoreUnusable(
            f"{path} holds no jobledger store (no events table): is it the right file? "
            "(`jobledger serve` creates a store on its first start)"
        )


def _check_postgres(config: StoreConfig, *, create: bool) -> None:
    import psycopg

    from persistence.postgres import conninfo

    env = config.env
    host, port, database, user = (env[f"POSTGRES_{k}"] for k in ("HOST", "PORT", "DBNAME", "USER"))
    where = f"PostgreSQL at {host}:{port} (database {database}, user {user})"
    schema = env.get("POSTGRES_SCHEMA") or "public"
    try:
        with psycopg.connect(**conninfo(config), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            if create:
                return
            found = conn.execute(
                "SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND table_name LIKE %s",
                (schema, EVENTS_TABLE),
            ).fetchone()
    except psycopg.Error as exc:
        lines = str(exc).strip().splitlines()  # the first says what failed; psycopg's hints follow
        reason = " ".join(lines[0].split()).rstrip(".") if lines else type(exc).__name__
        raise StoreUnusable(
            f"cannot reach {where}: {reason}. Is it running, and is the database URL "
            "(--database-url or $JOBLEDGER_DATABASE_URL) right?"
        ) from None
    if found is None:
        raise StoreUnusable(
            f"no jobledger store in schema {schema!r} of {where}, and this command creates none: give the "
            "store's --database-url or $JOBLEDGER_DATABASE_URL (`jobledger serve` creates a store on its first start)"
        )
