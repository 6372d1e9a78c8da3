"""The HTTP edge against hostile or careless input, over real HTTP, on SQLite and PostgreSQL.

Whatever arrives, the answer is JSON shaped like a GraphQL answer, with the contract's code in
`extensions.code`, and nothing is written: bodies over the limit (refused before they are read
whole), bodies that are not a GraphQL request, unknown paths and methods, and failures nobody
expected. None of it leaves a traceback in the server's log, except the unexpected failure,
logged once.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.http_edge import RequestLog
from tests.api.conftest import Server, free_port, start_server, stop_server
from tests.conftest import fresh_schema

LIMIT = 16384  # JOBLEDGER_MAX_BODY_BYTES of the servers below: small, so that tests send little
JSON_TYPE = {"content-type": "application/json", "x-jobledger-user": "tester"}


@dataclass
class Edge:
    """A running server and its log."""

    server: Server
    log: Path

    def tracebacks(self) -> int:
        return self.log.read_text().count("Traceback")


def start_edge(request: pytest.FixtureRequest, tmp: Path, **env: str) -> Edge:
    """A server on the store named by `request.param` (sqlite or postgres, a fresh schema)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'jobledger.db'}"
    else:
        url = fresh_schema(request.getfixturevalue("postgres_database"), "edge")
    log = tmp / "server.log"
    return Edge(start_server(url, str(log), **env), log)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def edge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """One server per store for this module's tests (none of them writes)."""
    running = start_edge(request, tmp_path_factory.mktemp("edge"), JOBLEDGER_MAX_BODY_BYTES=str(LIMIT))
    yield running
    stop_server(running.server)


def head(server: Server) -> int:
    return int(httpx.get(f"{server.url}/readyz", timeout=10).json()["head"])


def coded(response: httpx.Response, status: int, code: str = "VALIDATION") -> str:
    """Checks a JSON error answer with this status and code; returns its message."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.text
    answer = response.json()
    assert answer["data"] is None, answer
    error = answer["errors"][0]
    assert error["extensions"]["code"] == code, answer
    return str(error["message"])


def raw_request(server: Server, head_lines: list[str], body: bytes) -> tuple[int, dict[str, Any]]:
    """Sends a request by hand and reads the answer without ever finishing the body: an answer
    that arrives anyway was given before the body was read whole."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(("\r\n".join(head_lines) + "\r\n\r\n").encode() + body)
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        headers, _, rest = received.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in headers.lower().split(b"\r\n")[1:])
        length = int(fields[b"content-length"])
        while len(rest) < length:
            rest += sock.recv(65536)
    status = int(headers.split(b" ")[1])
    return status, json.loads(rest[:length])


# -- the body limit ----------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_with_413_and_writes_nothing(edge: Edge) -> None:
    server = edge.server
    before = head(server)
    mutation = 'mutation($d: String) { createQueue(input: {code: "too-big", description: $d}) { id } }'
    big = json.dumps({"query": mutation, "variables": {"d": "x" * LIMIT}})
    message = coded(httpx.post(server.graphql, content=big, headers=JSON_TYPE), 413)
    assert f"{LIMIT:,}" in message and "JOBLEDGER_MAX_BODY_BYTES" in message, message
    assert f"{len(big):,} bytes" in message, message

    # A request just under the limit is served: the limit counts bytes, nothing else.
    padded = json.dumps({"query": "{ __typename }"}) + " " * (LIMIT - 100)
    assert httpx.post(server.graphql, content=padded, headers=JSON_TYPE).json() == {"data": {"__typename": "Query"}}
    assert head(server) == before
    assert edge.tracebacks() == 0


def test_a_declared_length_over_the_limit_is_refused_before_the_body_arrives(edge: Edge) -> None:
    status, answer = raw_request(
        edge.server,
        ["POST /graphql HTTP/1.1", "Host: test", "Content-Type: application/json", f"Content-Length: {LIMIT * 100}"],
        b'{"query": "',  # and never the rest
    )
    assert status == 413, answer
    assert answer["errors"][0]["extensions"]["code"] == "VALIDATION"


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(edge: Edge) -> None:
    chunk = b"x" * 1000
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(LIMIT // 1000 + 2))
    status, answer = raw_request(
        edge.server,
        ["POST /graphql HTTP/1.1", "Host: test", "Content-Type: application/json", "Transfer-Encoding: chunked"],
        chunks,  # no last chunk: the body has not ended when the answer comes
    )
    assert status == 413, answer
    assert f"{LIMIT:,}" in answer["errors"][0]["message"]

    # Through an ordinary client too (httpx sends a generator chunked).
    response = httpx.post(edge.server.graphql, content=iter([chunk] * (LIMIT // 1000 + 5)), headers=JSON_TYPE)
    coded(response, 413)
    assert edge.tracebacks() == 0


def test_a_long_query_string_gets_a_coded_json_answer(edge: Edge) -> None:
    server = edge.server
    # Over the body limit but within what uvicorn reads: the app refuses it.
    message = coded(httpx.get(server.graphql, params={"query": "{ __typename }" + " " * LIMIT}), 414)
    assert "POST" in message
    # Over the 64 KiB uvicorn allows a URL (and httpx sends): uvicorn's parser refuses it, in JSON too.
    status, answer = raw_request(server, [f"GET /graphql?query={'%20' * 25_000} HTTP/1.1", "Host: test"], b"")
    assert status == 414 and answer["errors"][0]["extensions"]["code"] == "VALIDATION", answer
    assert "POST" in answer["errors"][0]["message"]
    # A GET within the limits is still served.
    assert httpx.get(server.graphql, params={"query": "{ __typename }"}).json() == {"data": {"__typename": "Query"}}


def test_the_serve_flag_sets_the_body_limit(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--max-body-bytes", "200"],
        env={**os.environ, "JOBLEDGER_AUTH": "off", "JOBLEDGER_DATABASE_URL": f"sqlite:///{tmp_path / 'j.db'}"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        body = json.dumps({"query": "{ __typename }" + " " * 300})
        assert "200 bytes" in coded(httpx.post(f"{url}/graphql", content=body, headers=JSON_TYPE), 413)
    finally:
        process.terminate()
        process.wait(10)
        log.close()


# -- bodies that are not a GraphQL request ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status", "wording"),
    [
        (b"null", "application/json", 400, "not null"),
        (b"[]", "application/json", 400, "one operation at a time"),
        (b'[{"query": "{ __typename }"}]', "application/json", 400, "one operation at a time"),
        (b'"{ __typename }"', "application/json", 400, "not a string"),
        (b"42", "application/json", 400, "not a number"),
        (b'{"query": "{ __typename \xff }"}', "application/json", 400, "not UTF-8"),
        (b"\xff\xfe{}", "application/json", 400, "not UTF-8"),
        (b'{"query": "{ __typename }", ', "application/json", 400, "not valid JSON"),
        (b"", "application/json", 400, "not valid JSON"),
        (b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 4301 + b"}}", "application/json", 400, "digits"),
        (b"[" * 3000 + b"]" * 3000, "application/json", 400, "too deeply"),
        (b'{"query": 5}', "application/json", 400, "query"),
        (b'{"query": "{ __typename }", "variables": [1]}', "application/json", 400, "variables"),
        (b'{"query": "{ __typename }"}', "text/plain", 415, "application/json"),
        (b"query=%7B__typename%7D", "application/x-www-form-urlencoded", 415, "application/json"),
        (b'{"query": "{ __typename }"}', None, 415, "application/json"),
    ],
    ids=[
        "null",
        "empty list",
        "batch",
        "string",
        "number",
        "non-utf8 inside",
        "non-utf8 start",
        "truncated",
        "empty",
        "an integer of 4301 digits",
        "nested 3000 deep",
        "query not a string",
        "variables a list",
        "text",
        "form",
        "no content type",
    ],
)
def test_a_body_that_is_not_a_graphql_request_is_a_coded_json_error(
    edge: Edge, body: bytes, content_type: str | None, status: int, wording: str
) -> None:
    server = edge.server
    before = head(server)
    headers = {"x-jobledger-user": "tester"}
    if content_type:
        headers["content-type"] = content_type
    response = httpx.post(server.graphql, content=body, headers=headers)
    assert wording in coded(response, status)
    assert head(server) == before
    assert edge.tracebacks() == 0


def test_get_parameters_that_are_not_json_are_coded_errors(edge: Edge) -> None:
    server = edge.server
    for variables in ("%ff", "[1]", "[" * 1500 + "]" * 1500):
        coded(httpx.get(server.graphql, params={"query": "{ __typename }", "variables": variables}), 400)
    assert edge.tracebacks() == 0


# -- paths and methods -----------------------------------------------------------------------------


def test_unknown_paths_and_methods_are_coded_json_and_the_dashboard_still_serves(edge: Edge) -> None:
    server = edge.server
    assert "/no/such/thing" in coded(httpx.get(f"{server.url}/no/such/thing"), 404, "NOT_FOUND")
    coded(httpx.get(f"{server.url}/static/no-such.js"), 404, "NOT_FOUND")
    coded(httpx.post(f"{server.url}/static/app.js"), 405)

    response = httpx.put(server.graphql, content=b"{}", headers=JSON_TYPE)
    assert "PUT" in coded(response, 405)
    assert "POST" in response.headers["allow"]
    coded(httpx.delete(f"{server.url}/healthz"), 405)

    dashboard = httpx.get(f"{server.url}/")
    assert dashboard.status_code == 200 and dashboard.headers["content-type"].startswith("text/html")
    script = httpx.get(f"{server.url}/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert edge.tracebacks() == 0


# -- the unexpected ----------------------------------------------------------------------------------


async def test_an_unexpected_exception_is_logged_once_and_answered_500_json_with_its_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The catch-all around the whole app, driven in-process: nothing a client can send makes the
    real service fail like this (that is the point), so a failing app stands in for it."""

    async def failing_app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("a bug nobody foresaw")

    transport = httpx.ASGITransport(app=RequestLog(failing_app))
    with caplog.at_level(logging.INFO, logger="jobledger"):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.post("/graphql", json={"query": "{ __typename }"})
    message = coded(response, 500, "INTERNAL")
    request_id = response.json()["errors"][0]["extensions"]["requestId"]
    assert response.headers["x-request-id"] == request_id
    assert request_id in message and "a bug nobody foresaw" not in message
    failures = [r for r in caplog.records if r.exc_info]
    assert len(failures) == 1 and request_id in failures[0].getMessage()
