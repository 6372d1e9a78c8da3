"""A stock Strawberry app for bench/wrk.py to compare jobledger's API with: the same
`jobs(first: 50)` page, in the same shape, from memory (no store, no auth, no loaders), as
Strawberry's own GraphQL ASGI app under uvicorn.

The jobs are read once at start-up from the JSON file named by BENCH_STOCK_JOBS: the `jobs`
answer jobledger gave to the query the benchmark sends, so both serve the same 50 jobs.

    BENCH_STOCK_JOBS=jobs.json .venv/bin/python -m uvicorn bench.stock_strawberry:app --port 8000
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import strawberry
from strawberry.asgi import GraphQL


@strawberry.type
class QueueRef:
    code: str


@strawberry.type
class Job:
    id: strawberry.ID
    code: str
    status: str
    priority: int
    progress: int
    size: int
    queue: QueueRef


@strawberry.type
class JobConnection:
    total_count: int
    nodes: list[Job]


def load_jobs(path: str) -> list[Job]:
    answer: dict[str, Any] = json.loads(Path(path).read_text())
    return [
        Job(
            id=strawberry.ID(node["id"]),
            code=node["code"],
            status=node["status"],
            priority=node["priority"],
            progress=node["progress"],
            size=node["size"],
            queue=QueueRef(code=node["queue"]["code"]),
        )
        for node in answer["nodes"]
    ]


JOBS = load_jobs(os.environ["BENCH_STOCK_JOBS"])


@strawberry.type
class Query:
    @strawberry.field
    def jobs(self, first: int = 50) -> JobConnection:
        return JobConnection(total_count=len(JOBS), nodes=JOBS[:first])


app = GraphQL(strawberry.Schema(query=Query), graphql_ide=None)
