"""What one batch of applied events touched: for the job roll-ups and the announcement."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.history import Record
from projections.stores import Tx

MAX_ANNOUNCED_IDS = 100  # NOTIFY payloads are limited to 8,000 bytes


@dataclass
class Batch:
    first: int = 0
    last: int = 0
    jobs: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    tasks: set[str] = field(default_factory=set)
    types: set[str] = field(default_factory=set)
    dirty_jobs: set[str] = field(default_factory=set)

    def saw(self, record: Record) -> None:
        self.first = self.first or record.position
        self.last = record.position
        self.types.add(record.type)

    def payload(self) -> str:
        """The announcement: positions, and the ids that changed (capped; `more` says so)."""

        def capped(ids: set[str]) -> list[str]:
            return sorted(ids)[:MAX_ANNOUNCED_IDS]

        more = any(len(s) > MAX_ANNOUNCED_IDS for s in (self.jobs, self.queues, self.tasks))
        return json.dumps(
            {
                "first": self.first,
                "position": self.last,
                "jobs": capped(self.jobs),
                "queues": capped(self.queues),
                "tasks": capped(self.tasks),
                "types": sorted(self.types),
                "more": more,
            },
            separators=(",", ":"),
        )


Handler = Callable[[Tx, Record, Batch], None]


def as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)
