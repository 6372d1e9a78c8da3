"""A stock Strawberry app for bench/wrk.py to compare jobledger's API with: the same
`jobs(first: 50)` page and the same page of a job's tasks, in the same shape, from memory (no store,
no auth, no loaders), as Strawberry's own GraphQL ASGI app under uvicorn, with its parser and
validation caches (as jobledger's schema has them).

The objects are read once at start-up from the JSON file named by BENCH_STOCK_JOBS: the `jobs` and
`job` answers jobledger gave to the queries the benchmark sends, so both serve the same objects.

    BENCH_STOCK_JOBS=jobs.json .venv/bin/python -m uvicorn bench.stock_strawberry:app --port 8000
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import strawberry
from strawberry.asgi import GraphQL
from strawberry.extensions import ParserCache, ValidationCache


@strawberry.type
class QueueRef:
    code: str


@strawberry.type
class Task:
    id: strawberry.ID
    uri: str
    status: str
    priority: int
    progress: int
    size: int
    attempts: int
    worker: str | None
    created: str


@strawberry.type
class TaskConnection:
    nodes: list[Task]


@strawberry.type
class Job:
    id: strawberry.ID
    code: str
    status: str
    priority: int
    progress: int
    created: str
    user: str | None
    queue: QueueRef
    tasks_page: strawberry.Private[list[Task]]

    @strawberry.field
    def tasks(self, first: int = 100) -> TaskConnection:
        return TaskConnection(nodes=self.tasks_page[:first])


@strawberry.type
class JobConnection:
    nodes: list[Job]


def load(path: str) -> tuple[list[Job], Job]:
    answers: dict[str, Any] = json.loads(Path(path).read_text())

    def job(node: dict[str, Any], tasks: list[Task]) -> Job:
        return Job(
            id=strawberry.ID(node["id"]),
            code=node["code"],
            status=node["status"],
            priority=node["priority"],
            progress=node["progress"],
            created=node["created"],
            user=node["user"],
            queue=QueueRef(code=node["queue"]["code"]),
            tasks_page=tasks,
        )

    tasks = [Task(**{**t, "id": strawberry.ID(t["id"])}) for t in answers["job"]["tasks"]["nodes"]]
    jobs = [job(node, []) for node in answers["jobs"]["nodes"]]
    big = job(
        {
            "id": "big",
            "code": "big",
            "status": "WAITING",
            "priority": 0,
            "progress": 0,
            "created": "",
            "user": None,
            "queue": {"code": "default"},
        },
        tasks,
    )
    return jobs, big


JOBS, BIG = load(os.environ["BENCH_STOCK_JOBS"])


@strawberry.type
class Query:
    @strawberry.field
    def jobs(self, first: int = 50) -> JobConnection:
        return JobConnection(nodes=JOBS[:first])

    @strawberry.field
    def job(self, id: strawberry.ID) -> Job:
        return BIG


# Strawberry's own parser and validation caches, as jobledger's schema has them: with
# graphql-core 3.3 validating even `{ __typename }` takes about 2 ms, which would otherwise
# be most of what the stock app does per request.
app = GraphQL(
    strawberry.Schema(query=Query, extensions=[ParserCache(maxsize=1000), ValidationCache(maxsize=1000)]),
    graphql_ide=None,
)
