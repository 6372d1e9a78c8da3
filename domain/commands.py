"""The command runner: atomic saves, actors, and clean retries on version conflicts."""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

from domain.base import acting_as
from domain.errors import ConflictError
from domain.unit_of_work import UnitOfWork

if TYPE_CHECKING:
    from domain.ledger import Ledger

MAX_COMMAND_ATTEMPTS = 12


@dataclass(frozen=True)
class Written:
    """What a command wrote: the ids it answers with, and the store position of its last event."""

    ids: list[str] = field(default_factory=list)
    position: int = 0

    @property
    def id(self) -> str:
        return self.ids[0]


def command(fn: Callable[..., list[str]]) -> Callable[..., Written]:
    """Run `fn` as one atomic command, recording `actor`; retry it from fresh state on a
    version conflict, and report CONFLICT if other writers keep winning."""

    @functools.wraps(fn)
    def run(self: Ledger, *args: Any, actor: str | None = None, **kwargs: Any) -> Written:
        with acting_as(actor):
            for attempt in range(MAX_COMMAND_ATTEMPTS):
                uow = UnitOfWork(self.repository)
                ids = fn(self, uow, *args, **kwargs)
                changed = uow.changed()
                if not changed:
                    return Written(ids=ids, position=self.position())
                try:
                    recordings = self.save(*changed)
                except IntegrityError:
                    time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
                    continue
                return Written(ids=ids, position=max(r.notification.id for r in recordings))
        raise ConflictError(
            f"{fn.__name__.replace('_', ' ')} kept colliding with other writers "
            f"({MAX_COMMAND_ATTEMPTS} attempts); try again"
        )

    return run
