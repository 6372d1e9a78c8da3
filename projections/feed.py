"""The change feed: what each committed batch changed, for subscriptions and read-your-writes.

The runner publishes after each commit; on PostgreSQL every instance also hears
the batch's NOTIFY. Changes at or below the newest position already published are
dropped, so hearing a batch twice delivers it once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("jobledger.feed")
# Changes a subscriber may have waiting; beyond this, those waiting merge into one, so
# that a consumer that stopped reading costs bounded memory, however busy the store is.
MAX_PENDING = 64
MAX_MERGED_IDS = 1000  # ids a merged change lists; beyond them it says `more`


@dataclass(frozen=True)
class Change:
    first: int
    position: int
    jobs: frozenset[str] = field(default_factory=frozenset)
    queues: frozenset[str] = field(default_factory=frozenset)
    tasks: frozenset[str] = field(default_factory=frozenset)
    types: frozenset[str] = field(default_factory=frozenset)
    more: bool = False  # more ids changed than the announcement lists

    @classmethod
    def from_payload(cls, payload: str) -> Change:
        d: dict[str, Any] = json.loads(payload)
        return cls(
            first=int(d["first"]),
            position=int(d["position"]),
            jobs=frozenset(d.get("jobs", ())),
            queues=frozenset(d.get("queues", ())),
            tasks=frozenset(d.get("tasks", ())),
            types=frozenset(d.get("types", ())),
            more=bool(d.get("more")),
        )

    def merged(self, later: Change) -> Change:
        """One change standing for this one and `later`: the span of both, their ids (up to
        MAX_MERGED_IDS of each kind; `more` says some were left out, to be read off the log)."""
        kinds = {name: getattr(self, name) | getattr(later, name) for name in ("jobs", "queues", "tasks", "types")}
        capped = any(len(ids) > MAX_MERGED_IDS for ids in kinds.values())
        return Change(
            first=min(self.first, later.first),
            position=max(self.position, later.position),
            **{name: frozenset(list(ids)[:MAX_MERGED_IDS]) for name, ids in kinds.items()},
            more=self.more or later.more or capped,
        )


def _deliver(queue: asyncio.Queue[Change], change: Change) -> None:
    """Put `change` in a subscriber's queue (on its loop); a full queue is merged into one."""
    if queue.qsize() < MAX_PENDING:
        queue.put_nowait(change)
        return
    pending = queue.get_nowait()
    while not queue.empty():
        pending = pending.merged(queue.get_nowait())
    queue.put_nowait(pending.merged(change))


class ChangeFeed:
    """Thread-safe: the runner publishes from its thread, asyncio code subscribes and waits."""

    def __init__(self, position: int = 0) -> None:
        self.position = position
        self._cond = threading.Condition()
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Change]]] = []

    def publish(self, change: Change) -> None:
        with self._cond:
            if change.position <= self.position:
                return
            self.position = change.position
            self._cond.notify_all()
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(_deliver, queue, change)
            except RuntimeError:  # that loop has closed
                self._drop(queue)

    def hear(self, payload: str) -> None:
        """An announcement from another process (PostgreSQL NOTIFY)."""
        try:
            self.publish(Change.from_payload(payload))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring a malformed change announcement: %s", exc)

    def advance(self, position: int) -> None:
        """Note a position reached without a change to announce (e.g. read at start-up)."""
        self.publish(Change(first=position, position=position))

    def wait_for(self, position: int, timeout: float) -> bool:
        """Block until the projections have passed `position`; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.position < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    async def wait_for_async(self, position: int, timeout: float) -> bool:
        """Wait, without blocking the event loop, until the projections have passed `position`."""
        if self.position >= position:
            return True
        queue: asyncio.Queue[Change] = asyncio.Queue()
        with self._cond:
            self._subscribers.append((asyncio.get_running_loop(), queue))
        try:
            deadline = time.monotonic() + timeout
            while self.position < position:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                try:
                    await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    return self.position >= position
            return True
        finally:
            self._drop(queue)

    async def subscribe(self, heartbeat: float = 0.5) -> AsyncIterator[Change]:
        """Every change from now on. Yields an empty tick every `heartbeat` seconds too,
        so that callers can check deadlines; ticks carry the current position."""
        queue: asyncio.Queue[Change] = asyncio.Queue()
        entry = (asyncio.get_running_loop(), queue)
        with self._cond:
            self._subscribers.append(entry)
        try:
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), heartbeat)
                except TimeoutError:
                    yield Change(first=self.position, position=self.position)
        finally:
            self._drop(queue)

    def _drop(self, queue: asyncio.Queue[Change]) -> None:
        with self._cond:
            self._subscribers = [(lp, q) for lp, q in self._subscribers if q is not queue]
