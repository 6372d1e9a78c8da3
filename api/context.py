"""Per-request context: who is asking, the stores, and DataLoaders that batch reads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader
from strawberry.types import Info

from api import answers
from api.auth import Caller
from domain.errors import UnauthenticatedError
from domain.idempotency import Idempotency
from domain.ledger import Ledger, Written
from persistence.faults import db_timeout, deadline_in, is_unavailable
from projections.query import Page, ReadModels
from projections.service import ReadModelsUnavailable, ReadSide
from projections.stores import Row

Context = dict[str, Any]
log = logging.getLogger("jobledger.api")
T = TypeVar("T")
TaskKey = tuple[str, tuple[str, ...], int, str | None]


async def _queues(read: ReadModels, ids: list[str]) -> list[Row | None]:
    found = await read.queues_by_id(ids)
    return [found.get(i) for i in ids]


async def _jobs(read: ReadModels, ids: list[str]) -> list[Row | None]:
    found = await read.jobs_by_id(ids)
    return [found.get(i) for i in ids]


async def _tasks(read: ReadModels, keys: list[TaskKey]) -> list[Page]:
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


async def _running(read: ReadModels, queue_ids: list[str]) -> list[int]:
    """RUNNING jobs per queue id."""
    pages = [await read.jobs(phase=None, queue=q, statuses=["RUNNING"], first=0) for q in queue_ids]
    return [page.total_count for page in pages]


async def _commands(read: ReadModels, codes: list[str]) -> list[bool]:
    """Whether each group's queues may hold command tasks."""
    found = await read.commands_allowed(codes)
    return [found[code] for code in codes]


_BATCHES: dict[str, Callable[[ReadModels, list[Any]], Any]] = {
    "queue": _queues,
    "job": _jobs,
    "tasks": _tasks,
    "running": _running,
    "commands": _commands,
}


class Loaders:
    """A request's DataLoaders (`queue`, `job`, `tasks`, `running`, `commands`), each made
    the first time a resolver asks for it: most requests use one or two of them."""

    queue: DataLoader[str, Row | None]
    job: DataLoader[str, Row | None]
    tasks: DataLoader[TaskKey, Page]
    running: DataLoader[str, int]
    commands: DataLoader[str, bool]

    def __init__(self, read: ReadModels, **made: DataLoader[Any, Any]) -> None:
        self._read = read
        self.__dict__.update(made)

    def __getattr__(self, name: str) -> DataLoader[Any, Any]:
        batch = _BATCHES.get(name)
        if batch is None:
            raise AttributeError(name)
        loader: DataLoader[Any, Any] = DataLoader(partial(batch, self._read))
        setattr(self, name, loader)
        return loader


def new_loaders(read: ReadModels) -> Loaders:
    return Loaders(read)


def loaders(info: Info[Context, Any]) -> Loaders:
    return info.context["loaders"]  # type: ignore[no-any-return]


def caller(info: Info[Context, Any]) -> Caller:
    """Who is calling (see `api.auth`); a websocket's is set when it connects."""
    found = info.context.get("caller")
    if found is None:
        raise UnauthenticatedError("missing", "send connection_init with a token first")
    return found  # type: ignore[no-any-return]


IDEMPOTENCY_HEADER = "Idempotency-Key"


def keyed(info: Info[Context, Any]) -> dict[str, Any]:
    """`idempotency=` for a mutation sent with an Idempotency-Key header: the key scoped to
    the caller and to this field (its alias: one request may hold several mutations), and
    the fingerprint of its arguments. Nothing when no key was sent."""
    headers = getattr(info.context.get("request"), "headers", None)
    key = headers.get(IDEMPOTENCY_HEADER) if headers is not None else None
    if key is None:
        return {}
    arguments = info.selected_fields[0].arguments if info.selected_fields else {}
    operation = f"{info.field_name}@{info.path.key}"
    return {"idempotency": Idempotency.of(key, caller(info).actor or "", operation, arguments)}


def writing(info: Info[Context, Any]) -> dict[str, Any]:
    """What a mutation's command runs with: `actor=`, `principal=` and, if sent, `idempotency=`."""
    return {**acting(info), **keyed(info)}


def acting(info: Info[Context, Any]) -> dict[str, Any]:
    """The `actor=` and `principal=` a command runs with; UNAUTHENTICATED without a valid token."""
    who = caller(info)
    return {"principal": who.require(), "actor": who.actor}


def bounded(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """`fn(...)` with one deadline for all its database calls: an outage is answered
    UNAVAILABLE after `db_timeout()` seconds, however many calls the request makes."""
    with deadline_in(db_timeout()):
        return fn(*args, **kwargs)


@dataclass
class Services:
    """What the app shares between requests."""

    ledger: Ledger
    read_side: ReadSide
    executor: ThreadPoolExecutor
    wait_timeout: float = 10.0

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, partial(bounded, fn, *args, **kwargs))


async def run_command(info: Info[Context, Any], command: Callable[..., Written], *args: Any, **kwargs: Any) -> Written:
    """Run a mutation's command and wait until the read models show it. When they do not
    in time, the write still stands (it is committed): the answer is then built from the
    aggregates (`api.answers`), and says so in `extensions.readModelsBehind`."""
    svc = services(info)
    loop = asyncio.get_running_loop()
    written = await loop.run_in_executor(svc.executor, partial(bounded, command, *args, **kwargs))
    info.context["saved"] = {**info.context.get("saved", {}), **written.saved}
    try:
        # A read side that is failing (the store away) is waited for as long as the store is.
        await svc.read_side.wait_for(written.position, svc.wait_timeout, patience=db_timeout())
    except ReadModelsUnavailable as behind:
        log.warning("answering from the aggregates: %s", behind)
        answer_from_aggregates(info, behind)
    return written


def answer_from_aggregates(info: Info[Context, Any], why: BaseException) -> None:
    """From now on this request's answer (nested fields too) comes from the aggregates its
    commands saved, not from the read models (which lag, or cannot be reached)."""
    svc = services(info)
    info.context["behind"] = why
    info.context.setdefault("saved", {})
    info.context["loaders"] = answers.saved_loaders(svc.ledger, info.context["saved"], info.context["read"], svc.call)


async def answer_rows(info: Info[Context, Any], from_read_models: Any, from_aggregates: Any, ids: list[str]) -> Any:
    """A mutation's rows: the read models' (`from_read_models(ids)`), or, when they lag or
    cannot be reached after a committed write, the aggregates' (`from_aggregates`, one of
    `api.answers`' builders): a committed write is answered as the success it is."""
    if not info.context.get("behind"):
        try:
            return await from_read_models(ids)
        except Exception as exc:
            if not is_unavailable(exc) or not info.context.get("saved"):
                raise
            log.warning("answering from the aggregates: the read models cannot be reached (%s)", exc)
            answer_from_aggregates(info, exc)
    return await services(info).call(from_aggregates, services(info).ledger, ids, info.context["saved"])


async def task_rows(info: Info[Context, Any], task_ids: list[str]) -> dict[str, Row]:
    """Tasks' rows for a mutation's answer: the read models', or the aggregates' when the
    read models lag behind the write (see `run_command`)."""
    return await answer_rows(info, info.context["read"].tasks_by_id, answers.task_rows, task_ids)  # type: ignore[no-any-return]


def services(info: Info[Context, Any]) -> Services:
    return info.context["services"]  # type: ignore[no-any-return]


async def owner_of_job(info: Info[Context, Any], row: Row | None) -> str | None:
    """The group owning a job's queue (None: no such job)."""
    if row is None:
        return None
    queue = await loaders(info).queue.load(row["queue_id"])
    return queue["owner"] if queue is not None else None


async def visible_job(info: Info[Context, Any], row: Row | None) -> Row | None:
    """The job's row if the caller may see it; else None, as if there were no such job."""
    return row if row is not None and caller(info).sees(await owner_of_job(info, row)) else None
