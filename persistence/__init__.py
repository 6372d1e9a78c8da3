"""Where the event store lives, beneath the domain: one small interface (`Storage`), one
module per backend (`sqlite`, `postgres`, `memory`) as eventsourcing lays out its own
recorders, and `open_storage`, which picks the backend by the database URL's scheme.

Nothing here knows the domain: a URL it cannot use raises `StorageError` (a ValueError),
which the callers above turn into their own errors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent
from eventsourcing.utils import resolve_topic

from persistence.urls import (
    DEFAULT_DATABASE_URL,
    Backend,
    StorageError,
    StoreConfig,
    database_url_from_env,
    parse_database_url,
)

# (position, originator id, version, topic, state): an event with its place in the log.
PositionedEvent = tuple[int, Any, int, str, bytes]


class Storage(StoreConfig, ABC):
    """A store named by a database URL: eventsourcing's settings for it (`env`, which picks
    the recorders), and what the application needs beyond those recorders. Opening one
    connects to nothing; `prepare` is the first step that touches the database."""

    @abstractmethod
    def prepare(self) -> None:
        """Make the database ready for eventsourcing to open (a schema, a journal mode)."""

    @abstractmethod
    def schema_lock(self) -> AbstractContextManager[None]:
        """Held while tables are created, so that processes starting at once on an empty
        store take turns instead of colliding."""

    @abstractmethod
    def select_events_after(self, recorder: ApplicationRecorder, versions: Mapping[UUID, int]) -> list[StoredEvent]:
        """The stored events of many aggregates newer than the version given for each, in
        one query (eventsourcing asks one aggregate at a time), ordered by aggregate and
        version."""

    @abstractmethod
    def select_aggregate_positions(self, recorder: ApplicationRecorder, aggregate_id: UUID) -> list[PositionedEvent]:
        """One aggregate's events with their positions in the log, oldest first
        (eventsourcing's `select_events` leaves the position out)."""


_BACKENDS: dict[Backend, str] = {
    "sqlite": "persistence.sqlite:SQLiteStorage",
    "postgres": "persistence.postgres:PostgresStorage",
    "memory": "persistence.memory:MemoryStorage",
}


def open_storage(url: str | StoreConfig) -> Storage:
    """The storage a database URL names; StorageError if it names none. Only the chosen
    backend's module (and its driver) is imported."""
    config = url if isinstance(url, StoreConfig) else parse_database_url(url)
    if isinstance(config, Storage):
        return config
    storage: type[Storage] = resolve_topic(_BACKENDS[config.backend])
    return storage(url=config.url, backend=config.backend, env=config.env)


__all__ = [
    "DEFAULT_DATABASE_URL",
    "Backend",
    "PositionedEvent",
    "Storage",
    "StorageError",
    "StoreConfig",
    "database_url_from_env",
    "open_storage",
    "parse_database_url",
]
