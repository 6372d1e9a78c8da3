"""Lookups by ids and codes no store can hold (NUL, unpaired surrogates) are the caller's
mistake, answered VALIDATION, never an internal error."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.api.conftest import Server

LOOKUPS = [
    ("query($v: ID!) { job(id: $v) { id } }", "job"),
    ("query($v: ID) { queue(id: $v) { id } }", "queue"),
    ("query($v: String) { queue(code: $v) { id } }", "queue"),
    ("query($v: ID!) { task(id: $v) { id } }", "task"),
    ("query($v: String) { jobs(queue: $v) { nodes { id } } }", "jobs"),
    ("query($v: ID!) { tasks(jobId: $v) { nodes { id } } }", "tasks"),
    ('mutation($v: String!) { claimTasks(worker: "w", queues: [$v]) { id } }', "claimTasks"),
]


@pytest.mark.parametrize("value", ["a\x00b", "a\udfffb"], ids=["nul", "surrogate"])
def test_unstorable_lookups_are_validation_errors(server: Server, value: str):
    for query, field in LOOKUPS:
        # JSON escapes (\\udfff) carry an unpaired surrogate, which UTF-8 cannot.
        body = json.dumps({"query": query, "variables": {"v": value}})
        answer = httpx.post(server.graphql, content=body, headers={"content-type": "application/json"}).json()
        assert answer.get("errors"), (field, answer)
        assert answer["errors"][0]["extensions"]["code"] == "VALIDATION", (field, answer)
        assert "cannot be stored" in answer["errors"][0]["message"]
