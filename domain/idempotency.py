"""Idempotency keys: a command sent again with the key of one already done is answered
with what the first wrote, and writes nothing more.

The key's record is an aggregate saved in the same atomic save as the command's own
events, so the two are committed together or not at all: a retry after a lost answer (a
dropped connection, a crash, a failover to another instance) finds the record exactly
when the first attempt's events are in the store. Two attempts racing with one key
collide on the record's version, and the loser, run again, finds the winner's record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.base import LedgerAggregate
from domain.errors import ConflictError, ValidationError
from domain.limits import MAX_NAME

# How long a key is remembered: a retry within it is answered from the record; after it
# the key may be used again for anything.
RETENTION = timedelta(hours=24)
MAX_KEY = 200  # characters of a key as the caller sends it


@dataclass(frozen=True)
class Idempotency:
    """A command's idempotency key (scoped to its caller and operation) and the
    fingerprint of its input: the same key with another input is a CONFLICT."""

    key: str
    fingerprint: str

    @classmethod
    def of(cls, key: object, scope: str, operation: str, arguments: Any) -> Idempotency:
        """The key a caller sent for `operation` with `arguments`, scoped to `scope` (who
        sent it), so that two callers' keys never meet."""
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY or not key.isprintable():
            raise ValidationError(
                "Idempotency-Key", f"must be 1 to {MAX_KEY} printable characters (a UUID is a good key)"
            )
        canonical = json.dumps([operation, arguments], sort_keys=True, default=str, separators=(",", ":"))
        return cls(
            key=f"{scope[:MAX_NAME]}\x1f{operation}\x1f{key.strip()}",
            fingerprint=hashlib.sha256(canonical.encode()).hexdigest(),
        )

    @property
    def shown(self) -> str:
        """The key as the caller sent it."""
        return self.key.rsplit("\x1f", 1)[-1]


def record_id(key: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"jobledger:idempotency:{key}")


class IdempotencyRecord(LedgerAggregate):
    """What the command sent with a key wrote (its answer's ids), and when."""

    @staticmethod
    def create_id(key: str, fingerprint: str, ids: list[str], at: datetime) -> UUID:
        return record_id(key)

    @event("Recorded")
    def __init__(self, key: str, fingerprint: str, ids: list[str], at: datetime) -> None:
        self.key = key
        self.fingerprint = fingerprint
        self.ids = ids
        self.at = at

    @event("Reused")
    def reuse(self, fingerprint: str, ids: list[str], at: datetime) -> None:
        """The key, past its retention, recorded for another command."""
        self.fingerprint = fingerprint
        self.ids = ids
        self.at = at

    def live(self, now: datetime) -> bool:
        return now - self.at < RETENTION

    def answer(self, wanted: Idempotency) -> list[str]:
        """The first command's ids, for a retry with the same input; CONFLICT for another input."""
        if self.fingerprint != wanted.fingerprint:
            raise ConflictError(
                f"Idempotency-Key {wanted.shown!r} was used within the last {RETENTION.total_seconds() / 3600:g} h "
                "for a request with other input; use a new key for a new request"
            )
        return list(self.ids)


def now() -> datetime:
    return datetime.now(UTC)
