"""A committed write is answered as a success even when the read models cannot show it
in time (answered from the aggregates, saying so); a retry with the same Idempotency-Key
writes nothing more, on the same or another field alias; other input under a used key is
CONFLICT."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest

from tests.api.conftest import Server, start_server, stop_server

CREATE = (
    'mutation { createJob(input: {code: "truth", tasks: [{source: "/a"}, {source: "/b"}], destination: "/out"})'
    " { id code status queue { code } } }"
)


def post(server: Server, query: str, key: str | None = None) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    return httpx.post(server.graphql, json={"query": query}, headers=headers, timeout=60).json()  # type: ignore[no-any-return]


@contextmanager
def jobs_table_away(store_url: str) -> Iterator[None]:
    """The read models' jobs table renamed under the running server: its projection runner
    cannot apply a job's events until it is back."""
    if store_url.startswith("sqlite"):
        path = store_url.removeprefix("sqlite:///")
        with sqlite3.connect(path, timeout=30) as db:
            db.execute("ALTER TABLE jl_jobs RENAME TO jl_jobs_away")
        try:
            yield
        finally:
            with sqlite3.connect(path, timeout=30) as db:
                db.execute("ALTER TABLE jl_jobs_away RENAME TO jl_jobs")
        return
    database, _, query = store_url.partition("?")
    schema = parse_qs(query)["schema"][0]
    assert urlsplit(database).scheme.startswith("postgres")
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(f'ALTER TABLE "{schema}".jl_jobs RENAME TO jl_jobs_away')
        try:
            yield
        finally:
            conn.execute(f'ALTER TABLE "{schema}".jl_jobs_away RENAME TO jl_jobs')


@pytest.fixture
def impatient(store_url: str, tmp_path) -> Iterator[Server]:
    """A server whose writes wait one second for the read models."""
    running = start_server(store_url, str(tmp_path / "server.log"), JOBLEDGER_READ_WAIT="1")
    yield running
    stop_server(running)


def test_a_committed_write_is_a_success_while_the_read_models_lag(impatient: Server, store_url: str):
    with jobs_table_away(store_url):
        answer = post(impatient, CREATE, key="k-lag")
        assert "errors" not in answer, answer
        job = answer["data"]["createJob"]
        assert job["code"] == "truth" and job["queue"]["code"] == "default"
        assert "readModelsBehind" in answer.get("extensions", {}), answer
        # It is in the log, as its answer says.
        events = impatient.data(f'{{ events(aggregateId: "{job["id"]}") {{ nodes {{ type }} }} }}')["events"]["nodes"]
        assert events[0]["type"] == "Job.Created"
        # Sent again with its key, it is the same job, and nothing more is written.
        again = post(impatient, CREATE, key="k-lag")
        assert again["data"]["createJob"]["id"] == job["id"], again


def test_the_same_key_answers_with_the_first_objects_and_writes_nothing_more(server: Server):
    first = post(server, CREATE, key="k1")
    count = server.data("{ jobs { totalCount } }")["jobs"]["totalCount"]
    positions = [e["position"] for e in server.data("{ events(first: 500) { nodes { position } } }")["events"]["nodes"]]
    second = post(server, CREATE, key="k1")
    assert second["data"]["createJob"]["id"] == first["data"]["createJob"]["id"]
    assert server.data("{ jobs { totalCount } }")["jobs"]["totalCount"] == count == 1
    after = [e["position"] for e in server.data("{ events(first: 500) { nodes { position } } }")["events"]["nodes"]]
    assert after == positions
    # Other input under the same key: CONFLICT, and nothing written.
    other = post(server, CREATE.replace('"truth"', '"other"'), key="k1")
    assert other["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert "Idempotency-Key" in other["errors"][0]["message"]
    assert server.data("{ jobs { totalCount } }")["jobs"]["totalCount"] == 1
    # Two aliases in one request under one key are two operations.
    body = 'createJob(input: {code: "twin", tasks: [{source: "/t"}], destination: "/out"}) { id }'
    both = post(server, f"mutation {{ a: {body} b: {body} }}", key="k2")
    assert "errors" not in both, both
    assert both["data"]["a"]["id"] != both["data"]["b"]["id"]


def test_a_retried_claim_gets_the_same_leases(server: Server):
    post(server, CREATE)
    first = post(server, 'mutation { claimTasks(worker: "w", limit: 5) { id task { id } } }', key="c1")
    again = post(server, 'mutation { claimTasks(worker: "w", limit: 5) { id task { id } } }', key="c1")
    assert [lease["id"] for lease in first["data"]["claimTasks"]] == [
        lease["id"] for lease in again["data"]["claimTasks"]
    ]
    assert len(first["data"]["claimTasks"]) == 2
