"""Idempotency keys: what makes a mutation safe to send again.

The clients send each mutation (but a heartbeat, see `documents.UNKEYED`) with an
`Idempotency-Key` header. The service answers a mutation it has already done with that key
(same caller, same field, same arguments, within 24 h) as it did the first time and writes
nothing new; the same key with other arguments is a Conflict. Every attempt of one call goes
with the same key, so a retry after a dropped connection cannot do it twice.

    job = client.create_job(tasks=["/a.mov"], idempotency_key="order-1234")   # a key of yours
    job = client.create_job(tasks=["/a.mov"], idempotency_key="order-1234")   # the same job
"""

from __future__ import annotations

import uuid

from jobledger_client import documents as doc

HEADER = "Idempotency-Key"


def new_key() -> str:
    """A fresh key (a UUID 4)."""
    return str(uuid.uuid4())


class Keys:
    """The keys of one call's mutations: the caller's key (else a fresh one) for the first,
    `<key>.2`, `<key>.3`... for any after it, so that the call made again with the caller's
    key sends each of its mutations with the key it had the first time."""

    def __init__(self, given: str | None = None) -> None:
        self.given = given
        self.sent = 0

    def for_document(self, document: str) -> str | None:
        """The key to send `document` with; None for a query (or a heartbeat)."""
        if not doc.needs_key(document):
            return None
        self.sent += 1
        if self.given is None:
            return new_key()
        return self.given if self.sent == 1 else f"{self.given}.{self.sent}"
