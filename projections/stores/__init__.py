"""The small interface the read side needs from a database, one module per backend.

SQL is written once with `?` placeholders; each backend adapts placeholders,
timestamps and booleans to its driver. `open_read_store` picks the backend from
the ledger's database URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from domain.errors import ValidationError
from persistence import StoreConfig
from persistence.urls import SETTING
from projections.stores.dialect import TIME_COLUMNS, Row, iter_chunks, numbered, utc


class Tx(Protocol):
    """One open transaction on the write side of the read models."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int: ...
    def later(self, sql: str, params: Sequence[Any] = ()) -> None:
        """A write whose result is not needed: it may be sent with others (before any
        other statement of the transaction, in order)."""

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None: ...
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def announce(self, payload: str) -> None: ...


class ReadStore(Protocol):
    backend: str
    timestamp_type: str
    bigint_type: str

    def transaction(self) -> AbstractContextManager[Tx]: ...
    def read(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]: ...
    def try_lead(self, role: str) -> bool: ...
    async def listen(self, callback: Any) -> Any: ...
    async def open_async(self) -> None: ...
    async def close_async(self) -> None: ...
    def close(self) -> None: ...


def open_read_store(config: StoreConfig) -> ReadStore:
    """The read models beside the events, in the database `config` names; a ValidationError
    for a store that has none (memory://, eventsourcing's in-memory store for rule tests)."""
    if config.backend == "memory":
        raise ValidationError(
            SETTING, "the read models need a database: use sqlite:///path or postgresql://user@host/db"
        )
    if config.backend == "sqlite":
        from projections.stores.sqlite import SQLiteReadStore

        return SQLiteReadStore(config)
    from projections.stores.postgres import PostgresReadStore

    return PostgresReadStore(config)


__all__ = ["TIME_COLUMNS", "ReadStore", "Row", "Tx", "iter_chunks", "numbered", "open_read_store", "utc"]
