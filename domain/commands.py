"""The command runner: atomic saves, actors, and clean retries on version conflicts."""

from __future__ import annotations

import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import IntegrityError

from domain.base import acting_as
from domain.errors import ConflictError
from domain.limits import MAX_NAME
from domain.rules import check_optional_string
from domain.unit_of_work import UnitOfWork, remember

if TYPE_CHECKING:
    from domain.ledger import Ledger

MAX_COMMAND_ATTEMPTS = 30
_RETRY_TURN = threading.Lock()


def _attempt(ledger: Ledger, fn: Callable[..., list[str]], args: Any, kwargs: Any) -> Written | None:
    """Run the command once from fresh state and save; None if another writer won."""
    uow = UnitOfWork(ledger.repository, ledger.select_events_after)
    ids = fn(ledger, uow, *args, **kwargs)
    changed = uow.changed()
    if not changed:
        return Written(ids=ids, position=ledger.position())
    try:
        recordings = ledger.save(*changed)
    except IntegrityError:
        return None
    remember(ledger.repository, changed)
    return Written(ids=ids, position=max(r.notification.id for r in recordings))


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
        check_optional_string("actor", actor, MAX_NAME)  # recorded on every event it writes
        with acting_as(actor):
            written = _attempt(self, fn, args, kwargs)
            if written is not None:
                return written
            # Lost a race. Retries in this process take turns, so that many writers on
            # one hot aggregate (a busy queue) make progress instead of colliding forever.
            with _RETRY_TURN:
                for attempt in range(MAX_COMMAND_ATTEMPTS):
                    written = _attempt(self, fn, args, kwargs)
                    if written is not None:
                        return written
                    time.sleep(random.uniform(0, 0.001 * 2 ** min(attempt, 5)))
        raise ConflictError(
            f"{fn.__name__.replace('_', ' ')} kept colliding with other writers "
            f"({MAX_COMMAND_ATTEMPTS} attempts); try again"
        )

    return run
