"""Per-request context: who is asking, the stores, and DataLoaders that batch reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types import Info

from domain.ledger import Ledger, Written
from projections.query import Page, ReadModels
from projections.service import ReadSide
from projections.stores import Row

Context = dict[str, Any]
ACTOR_HEADER = "X-Jobledger-User"
T = TypeVar("T")
TaskKey = tuple[str, tuple[str, ...], int, str | None]


@dataclass
class Loaders:
    queue: DataLoader[str, Row | None]
    job: DataLoader[str, Row | None]
    tasks: DataLoader[TaskKey, Page]
    running: DataLoader[str, int]  # RUNNING jobs per queue id


def new_loaders(read: ReadModels) -> Loaders:
    async def queues(ids: list[str]) -> list[Row | None]:
        found = await read.queues_by_id(ids)
        return [found.get(i) for i in ids]

    async def jobs(ids: list[str]) -> list[Row | None]:
        found = await read.jobs_by_id(ids)
        return [found.get(i) for i in ids]

    async def tasks(keys: list[TaskKey]) -> list[Page]:
        """One query per distinct (statuses, first) for every job of the page."""
        pages: dict[TaskKey, Page] = {}
        groups: dict[tuple[tuple[str, ...], int], list[str]] = {}
        for key in keys:
            job_id, statuses, first, after = key
            if after is not None:
                pages[key] = await read.tasks(job_id, first=first, after=after, statuses=statuses or None)
            else:
                groups.setdefault((statuses, first), []).append(job_id)
        for (statuses, first), job_ids in groups.items():
            found = await read.tasks_for_jobs(job_ids, statuses or None, first)
            for job_id in job_ids:
                pages[(job_id, statuses, first, None)] = found[job_id]
        return [pages[k] for k in keys]

    async def running(queue_ids: list[str]) -> list[int]:
        pages = [await read.jobs(phase=None, queue=q, statuses=["RUNNING"], first=0) for q in queue_ids]
        return [page.total_count for page in pages]

    return Loaders(queue=DataLoader(queues), job=DataLoader(jobs), tasks=DataLoader(tasks), running=DataLoader(running))


def loaders(info: Info[Context, Any]) -> Loaders:
    return info.context["loaders"]  # type: ignore[no-any-return]


def actor(info: Info[Context, Any]) -> str | None:
    """The caller: the X-Jobledger-User header, or the same key in a websocket's connection_init."""
    params = info.context.get("connection_params") or {}
    if isinstance(params, dict):
        for key, value in params.items():
            if key.lower() == ACTOR_HEADER.lower() and isinstance(value, str) and value:
                return value
    request = info.context.get("request")
    headers = getattr(request, "headers", None)
    value = headers.get(ACTOR_HEADER) if headers is not None else None
    return value or None


@dataclass
class Services:
    """What the app shares between requests."""

    ledger: Ledger
    read_side: ReadSide
    executor: ThreadPoolExecutor
    wait_timeout: float = 10.0

    async def run(self, command: Callable[..., Written], *args: Any, **kwargs: Any) -> Written:
        """Run a command in the bounded pool, then wait until the read models show it."""
        loop = asyncio.get_running_loop()
        written = await loop.run_in_executor(self.executor, partial(command, *args, **kwargs))
        await self.read_side.wait_for(written.position, self.wait_timeout)
        return written

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(fn, *args, **kwargs))


def services(info: Info[Context, Any]) -> Services:
    return info.context["services"]  # type: ignore[no-any-return]
