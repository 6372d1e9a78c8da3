"""Database URLs: which store a URL names, and eventsourcing's settings for it.

SQLite files are named the way a `file:` URL names them:

* `sqlite:///var/lib/jobledger.db` — an absolute path (`/var/lib/jobledger.db`); so is
  `sqlite:////var/lib/jobledger.db`, the form SQLAlchemy writes, and
  `sqlite://localhost/var/lib/jobledger.db`;
* `sqlite:jobledger.db`, `sqlite:data/jobledger.db`, `sqlite:./jobledger.db` — relative to
  the folder the command runs in (no `//`); `sqlite:~/jobledger.db` — in the home folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from persistence.faults import db_timeout

SETTING = "JOBLEDGER_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:jobledger.db"  # ./jobledger.db, in the folder the command runs in
Backend = Literal["sqlite", "postgres", "memory"]

# Only the settings name the recorder: stored events and snapshots name the domain's
# event classes, never a recorder, so the recorder's module can move without a migration.
GAP_FREE_RECORDER_TOPIC = "persistence.postgres:GapFreePostgresApplicationRecorder"


class StorageError(ValueError):
    """A database URL that names no store we can use. `reason` says what to write instead;
    the message starts with the setting (`JOBLEDGER_DATABASE_URL: ...`)."""

    setting = SETTING

    def __init__(self, reason: str) -> None:
        super().__init__(f"{self.setting}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class StoreConfig:
    """A parsed database URL: the backend and eventsourcing's settings for it."""

    url: str
    backend: Backend
    env: dict[str, str] = field(default_factory=dict)

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite file's absolute path (None for other stores)."""
        if self.backend != "sqlite":
            return None
        return Path(self.env["SQLITE_DBNAME"]).absolute()

    @property
    def display(self) -> str:
        """The URL without its password, for logs."""
        parts = urlsplit(self.url)
        if parts.password:
            return self.url.replace(f":{parts.password}@", ":***@")
        return self.url


def database_url_from_env() -> str:
    return os.environ.get(SETTING) or DEFAULT_DATABASE_URL


SQLITE_FORMS = "sqlite:///absolute/path.db, or sqlite:relative/path.db (from the current folder)"


def parse_database_url(url: str) -> StoreConfig:
    """`sqlite:///absolute/path.db` or `sqlite:relative/path.db` (see the module's doc),
    `postgresql://user:password@host:port/db?schema=s`, or `memory://` (eventsourcing's
    in-memory store: events in this process only, for tests). StorageError for anything else."""
    scheme = urlsplit(url).scheme
    parse = _SCHEMES.get(scheme)
    if parse is None:
        raise StorageError(f"unsupported scheme {scheme!r}: use sqlite:///path or postgresql://user@host/db")
    return parse(url)


def sqlite_file(url: str) -> str:
    """The file an `sqlite:` URL names: absolute after `//` (an empty or `localhost` host,
    any number of slashes), relative to the current folder without; `~` is the home folder."""
    rest = url[len("sqlite:") :].split("?", 1)[0]
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host not in ("", "localhost"):
            raise StorageError(f"an SQLite file is on this machine, not on {host!r}: write {SQLITE_FORMS}")
        path = "/" + path.lstrip("/") if slash else ""
    else:
        path = rest
    path = os.path.expanduser(unquote(path))
    if path in ("", "/") or path.endswith("/"):
        raise StorageError(f"an SQLite URL names a file: {SQLITE_FORMS}, e.g. sqlite:///var/lib/jobledger.db")
    return path


def _sqlite(url: str) -> StoreConfig:
    path = sqlite_file(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": path,
        "SQLITE_LOCK_TIMEOUT": "30",
    }
    return StoreConfig(url=url, backend="sqlite", env=env)


def _postgres(url: str) -> StoreConfig:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    env = {
        "PERSISTENCE_MODULE": "persistence.postgres:BoundedPostgresFactory",
        "POSTGRES_DBNAME": unquote(parts.path.lstrip("/")) or "postgres",
        "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432),
        "POSTGRES_USER": unquote(parts.username or "postgres"),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_SCHEMA": query.get("schema", ["public"])[0],
        "POSTGRES_POOL_SIZE": query.get("pool_size", ["5"])[0],
        "POSTGRES_MAX_OVERFLOW": "10",
        "POSTGRES_LOCK_TIMEOUT": "10",
        # Also how long a command waits for a pooled connection: an outage is answered in time.
        "POSTGRES_CONNECT_TIMEOUT": str(max(1, round(db_timeout()))),
        "APPLICATION_RECORDER_TOPIC": GAP_FREE_RECORDER_TOPIC,
    }
    return StoreConfig(url=url, backend="postgres", env=env)


def _memory(url: str) -> StoreConfig:
    if url.rstrip("/") != "memory:":
        raise StorageError("the in-memory store's URL is memory:// (it takes no host, path or options)")
    return StoreConfig(url=url, backend="memory", env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


_SCHEMES: dict[str, Callable[[str], StoreConfig]] = {
    "sqlite": _sqlite,
    "postgresql": _postgres,
    "postgres": _postgres,
    "postgresql+psycopg": _postgres,
    "memory": _memory,
}
