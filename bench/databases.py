"""What every benchmark needs of PostgreSQL: the server to use, and throwaway databases on it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psycopg

ADMIN_URL = os.environ.get("JOBLEDGER_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def fresh_postgres(prefix: str = "jobledger_bench") -> Iterator[str]:
    """A new database on the server of ADMIN_URL, dropped afterwards; yields its URL."""
    database = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}"')
    try:
        yield ADMIN_URL.rsplit("/", 1)[0] + f"/{database}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
