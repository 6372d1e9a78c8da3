"""GraphQL over HTTP as the spec says (the SHOULDs graphql-http's `auditServer` checks), on a
real `jobledger serve`.

A client that accepts `application/graphql-response+json` gets its answers in that media
type; a request that never ran (its document does not parse or validate, its variables do
not fit) is then answered 400 without a `data` entry. A client that accepts only
`application/json` (or anything, or says nothing: the CLI, the client library, the
dashboard) gets `application/json` and 200 with `"data": null`, as before the spec.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import Server, start_server, stop_server

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"

NOT_PARSING = "{ queues { totalCount "
NOT_VALID = "{ queues { noSuchField } }"
NEEDS_A_NUMBER = "query Queues($first: Int) { queues(first: $first) { totalCount } }"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module (no test here writes): the media type does not depend on the store."""
    tmp: Path = tmp_path_factory.mktemp("over-http")
    running = start_server(f"sqlite:///{tmp / 'jobledger.db'}", str(tmp / "server.log"))
    yield running
    stop_server(running)


def post(server: Server, accept: str | None, query: str, variables: dict[str, Any] | None = None) -> httpx.Response:
    """POST a GraphQL request with this Accept header; None: none at all (not httpx's `*/*`)."""
    headers = {"Accept": accept} if accept is not None else {}
    request = httpx.Request("POST", server.graphql, json={"query": query, "variables": variables}, headers=headers)
    assert ("accept" in request.headers) is (accept is not None)
    with httpx.Client(timeout=30) as client:
        return client.send(request)


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def test_a_client_that_accepts_graphql_response_json_gets_it(server: Server) -> None:
    answer = post(server, GRAPHQL_RESPONSE, "{ queues { totalCount } }")
    assert (answer.status_code, media_type(answer)) == (200, GRAPHQL_RESPONSE), answer.text
    assert answer.json() == {"data": {"queues": {"totalCount": 1}}}
    by_get = httpx.get(
        server.graphql, params={"query": "{ queues { totalCount } }"}, headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert (by_get.status_code, media_type(by_get)) == (200, GRAPHQL_RESPONSE), by_get.text


@pytest.mark.parametrize("accept", ["application/json", "*/*", None, "text/plain, application/json;q=0.5"])
def test_clients_from_before_the_spec_get_application_json(server: Server, accept: str | None) -> None:
    answer = post(server, accept, "{ queues { totalCount } }")
    assert (answer.status_code, media_type(answer)) == (200, JSON), answer.text
    assert answer.json() == {"data": {"queues": {"totalCount": 1}}}


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (f"{GRAPHQL_RESPONSE}, {JSON};q=0.9", GRAPHQL_RESPONSE),
        (f"{JSON}, {GRAPHQL_RESPONSE}", GRAPHQL_RESPONSE),  # equal weight: the spec's own
        (f"{JSON}, {GRAPHQL_RESPONSE};q=0.5", JSON),
        (f"{GRAPHQL_RESPONSE};q=0, {JSON}", JSON),
        (f"{GRAPHQL_RESPONSE};charset=utf-8", GRAPHQL_RESPONSE),
    ],
)
def test_the_accept_header_s_weights_pick_the_media_type(server: Server, accept: str, expected: str) -> None:
    assert media_type(post(server, accept, "{ queues { totalCount } }")) == expected


@pytest.mark.parametrize(
    ("query", "variables", "wording"),
    [
        (NOT_PARSING, None, "Syntax Error"),
        (NOT_VALID, None, "noSuchField"),
        (NEEDS_A_NUMBER, {"first": "fifty"}, "$first"),
    ],
    ids=["does-not-parse", "does-not-validate", "variable-does-not-fit"],
)
def test_a_request_that_never_ran_is_400_without_data_in_graphql_response_json(
    server: Server, query: str, variables: dict[str, Any] | None, wording: str
) -> None:
    answer = post(server, GRAPHQL_RESPONSE, query, variables)
    assert (answer.status_code, media_type(answer)) == (400, GRAPHQL_RESPONSE), answer.text
    body = answer.json()
    assert "data" not in body, body
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "VALIDATION" and wording in error["message"], error


@pytest.mark.parametrize(
    ("query", "variables"),
    [(NOT_PARSING, None), (NOT_VALID, None), (NEEDS_A_NUMBER, {"first": "fifty"})],
    ids=["does-not-parse", "does-not-validate", "variable-does-not-fit"],
)
def test_the_same_requests_stay_200_with_null_data_in_application_json(
    server: Server, query: str, variables: dict[str, Any] | None
) -> None:
    answer = post(server, JSON, query, variables)
    assert (answer.status_code, media_type(answer)) == (200, JSON), answer.text
    body = answer.json()
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "VALIDATION", body


def test_an_error_while_running_is_200_with_its_data_in_either_media_type(server: Server) -> None:
    """The operation ran and a field failed: a GraphQL answer with `data`, not a refused request."""
    missing = 'mutation { updateQueue(id: "no-such-queue", input: {priority: 1}) { code } }'
    for accept in (GRAPHQL_RESPONSE, JSON):
        answer = post(server, accept, missing)
        assert (answer.status_code, media_type(answer)) == (200, accept), answer.text
        body = answer.json()
        assert "data" in body and body["data"] is None, body
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND" and body["errors"][0]["path"] == ["updateQueue"]


def test_a_body_that_is_not_a_graphql_request_is_refused_in_the_media_type_asked_for(server: Server) -> None:
    headers = {"Content-Type": JSON}
    for accept, has_data in ((GRAPHQL_RESPONSE, False), (JSON, True)):
        answer = httpx.post(server.graphql, content=b"{not json", headers={**headers, "Accept": accept})
        assert (answer.status_code, media_type(answer)) == (400, accept), answer.text
        body = answer.json()
        assert ("data" in body) is has_data and body["errors"][0]["extensions"]["code"] == "VALIDATION", body
    wrong_type = httpx.post(
        server.graphql, content=b"{}", headers={"Content-Type": "text/plain", "Accept": GRAPHQL_RESPONSE}
    )
    assert (wrong_type.status_code, media_type(wrong_type)) == (415, GRAPHQL_RESPONSE), wrong_type.text


def test_a_mutation_by_get_is_refused(server: Server) -> None:
    answer = httpx.get(
        server.graphql, params={"query": 'mutation { deleteQueue(id: "x") }'}, headers={"Accept": GRAPHQL_RESPONSE}
    )
    assert 400 <= answer.status_code < 500 and media_type(answer) == GRAPHQL_RESPONSE, answer.text
    assert "data" not in answer.json()
