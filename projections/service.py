"""The read side as one unit: store, runner, change feed, queries and clock."""

from __future__ import annotations

import logging
from typing import Any

from domain.ledger import Ledger
from projections.clock import Clock
from projections.feed import ChangeFeed
from projections.query import ReadModels
from projections.runner import ProjectionRunner
from projections.stores import open_read_store

log = logging.getLogger("jobledger.projections")


class ReadSide:
    """Everything `jobledger serve` runs beside the ledger to keep and serve the read models."""

    def __init__(self, ledger: Ledger, finished_grace_s: float = 3600, archive_after_s: float = 1_209_600) -> None:
        self.ledger = ledger
        self.store = open_read_store(ledger.store)
        self.feed = ChangeFeed()
        self.runner = ProjectionRunner(ledger, self.store, self.feed)
        self.models = ReadModels(self.store)
        self.clock = Clock(
            ledger,
            self.store,
            finished_grace_s,
            archive_after_s,
            is_leader=lambda: self.store.try_lead("clock"),
        )
        self._listener: Any = None

    def start(self, *, clock: bool = True) -> None:
        """Create the tables, catch up, then follow the log (and run the clock) in the background."""
        self.runner.setup()
        self.ledger.after_save.append(self.runner.wake)
        self.runner.start()
        if clock:
            self.clock.start()

    async def start_async(self) -> None:
        """Open the async query pool and, on PostgreSQL, hear other instances' batches."""
        await self.store.open_async()
        self._listener = await self.store.listen(self.feed.hear)

    async def wait_for(self, position: int, timeout: float = 10.0) -> bool:
        """Read-your-writes: wait until the read models include `position`."""
        return await self.feed.wait_for_async(position, timeout)

    async def stop_async(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        await self.store.close_async()

    def stop(self) -> None:
        self.clock.stop()
        self.runner.stop()
        if self.runner.wake in self.ledger.after_save:
            self.ledger.after_save.remove(self.runner.wake)
        self.store.close()
