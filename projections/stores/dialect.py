"""What both read-store backends share: the row type, `?` placeholders rewritten per driver,
timestamps in UTC."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

Row = dict[str, Any]
TIME_COLUMNS = frozenset({"created", "modified", "finished", "started", "expires", "lease_expires", "retry_at"})


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def numbered(sql: str, style: str) -> str:
    """Rewrite `?` placeholders as `%s` (psycopg) or `$1, $2, ...` (asyncpg)."""
    if style == "%s":
        return sql.replace("%", "%%").replace("?", "%s")
    parts = sql.split("?")
    out = [parts[0]]
    for index, part in enumerate(parts[1:], start=1):
        out.append(f"${index}{part}")
    return "".join(out)


def iter_chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
