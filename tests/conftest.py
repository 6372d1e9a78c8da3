"""Fixtures shared by every test: the two stores, and ledgers on them.

`store_url` is parametrised over SQLite and PostgreSQL. PostgreSQL gets a fresh
database per test session and a fresh schema per test. Without a reachable
PostgreSQL its tests are skipped with the reason, unless
JOBLEDGER_REQUIRE_POSTGRES=1 (as in CI), where that is an error.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from domain.ledger import Ledger

ADMIN_URL = os.environ.get("JOBLEDGER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("JOBLEDGER_REQUIRE_POSTGRES", "") not in ("", "0", "no", "false")
_schemas = itertools.count(1)


def _admin_connect() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A database of this test session's own; its URL without a schema."""
    try:
        admin = _admin_connect()
    except psycopg.OperationalError as exc:
        reason = (
            f"PostgreSQL not reachable at {ADMIN_URL} ({exc.__class__.__name__}); "
            "set JOBLEDGER_TEST_POSTGRES_URL to test against it"
        )
        if REQUIRE_POSTGRES:
            pytest.fail(f"JOBLEDGER_REQUIRE_POSTGRES is set but {reason}", pytrace=False)
        pytest.skip(reason)
    name = f"jobledger_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with _admin_connect() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_schema(database: str, prefix: str) -> str:
    """The URL of a new, empty schema (named `prefix` + random letters) in `database`."""
    schema = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return f"{database}?schema={schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """An empty store: an SQLite file, or a fresh schema in the session's PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobledger.db'}"
    return fresh_schema(request.getfixturevalue("postgres_database"), f"t{next(_schemas)}")


@pytest.fixture
def new_ledger(store_url: str) -> Iterator[Callable[[], Ledger]]:
    """Opens ledgers on the test's store (several act like several service instances)."""
    opened: list[Ledger] = []

    def open_ledger() -> Ledger:
        ledger = Ledger(store_url)
        opened.append(ledger)
        return ledger

    yield open_ledger
    for ledger in opened:
        ledger.close()


@pytest.fixture
def ledger(new_ledger: Callable[[], Ledger]) -> Ledger:
    return new_ledger()
