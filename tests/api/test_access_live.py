"""Access control over time and across instances (issue 13): a revoked token is refused
at its next request by every instance of the service, and a running subscription stops
soon after; events name the token's holder whatever the request says; bad tokens slow
their address down, never a token that works; /readyz tells nothing of the store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from domain.ledger import Ledger
from tests.api.access_support import (
    TokenWS,
    code_of,
    data_of,
    errors_in,
    fresh_address,
    head,
    minting_ledger,
    poll,
    post,
    start_with_auth,
    unknown_token,
)
from tests.api.conftest import Server, start_server, stop_server
from tests.conftest import fresh_schema

REPO = Path(__file__).parents[2]
RECHECK_S = 5.0  # the rule: a running subscription's token is read again at most this long apart
UNAUTH = "UNAUTHENTICATED"
ME = "{ me { user } }"
CREATE_QUEUE = 'mutation($code: String!) { createQueue(input: {code: $code, group: "a"}) { id user } }'
CREATE_JOB = """
mutation($input: CreateJobInput!) { createJob(input: $input) { id user tasks { nodes { id } } } }
"""
BUMP = "mutation($id: ID!, $p: Int) { updateJob(id: $id, input: {priority: $p}) { id modifier } }"
REVOKE = "mutation($t: String!) { revokeToken(token: $t) }"


@dataclass
class Site:
    """A server with authentication on, its first admin's token, and a ledger that mints
    tokens on its store; group `a` owns the queue `qa`."""

    server: Server
    admin: str
    ledger: Ledger
    numbers: Iterator[int]

    def mint(self, role: str) -> tuple[str, str]:
        """A new user of group a in `role`, and a token of theirs."""
        user = f"{role}-{next(self.numbers)}"
        return user, self.ledger.identity.ensure_token(user, "a", role, actor="test").token

    def job(self, token: str, **headers: str) -> dict[str, Any]:
        spec = {"queue": "qa", "destination": "/out", "tasks": [{"source": f"/in/{next(self.numbers)}"}]}
        answer = post(self.server, CREATE_JOB, {"input": spec}, token, headers=headers)
        return data_of(answer)["createJob"]  # type: ignore[no-any-return]

    def bump(self, job_id: str) -> None:
        """A change to the job, by the first admin."""
        data_of(post(self.server, BUMP, {"id": job_id, "p": 1 + next(self.numbers) % 999}, self.admin))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("access-live")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'jobledger.db'}"
    else:
        url = fresh_schema(request.getfixturevalue("postgres_database"), "live")
    server, admin = start_with_auth(url, tmp)
    ledger = minting_ledger(url)
    try:
        assert admin is not None
        ledger.identity.ensure_token("a-owner", "a", "admin", actor="test")  # makes group a
        data_of(post(server, CREATE_QUEUE, {"code": "qa"}, admin))
        yield Site(server, admin, ledger, iter(range(1, 10**9)))
    finally:
        stop_server(server)
        ledger.close()


# -- revocation ----------------------------------------------------------------------------


def jobledger(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "JOBLEDGER_DATABASE_URL": store_url}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], env=environment, cwd=REPO, capture_output=True, text=True, timeout=60
    )


def refused(server: Server, token: str, document: str = ME, variables: dict[str, Any] | None = None) -> bool:
    # From an address of its own, so that these refusals slow nothing down.
    return code_of(post(server, document, variables, token, address=fresh_address())) == UNAUTH


async def subscription_refused(server: Server, token: str) -> list[dict[str, Any]]:
    async with TokenWS(server.ws, token, fresh_address()) as ws:
        sub = await ws.subscribe("subscription { jobUpdated { id } }")
        msg = await poll(sub.inbox, 8)
        assert msg is not None, "no answer to a subscription with a revoked token"
        return errors_in(msg)


# Several instances on one store: only PostgreSQL has them (an SQLite file is one process's).
@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_revoked_token_is_refused_at_its_next_request_by_every_instance(store_url: str, tmp_path: Path) -> None:
    one, admin = start_with_auth(store_url, tmp_path, "one")
    ledger = minting_ledger(store_url)
    two: Server | None = None
    try:
        assert admin is not None
        # The second instance starts once the first has set the store up (as in test_subscriptions).
        two, second_admin = start_with_auth(store_url, tmp_path, "two")
        assert second_admin is None, "a store with users gets no second first admin"
        tokens = [ledger.identity.ensure_token("mia", "a", "member", actor="test").token for _ in range(3)]
        job_input = {"input": {"tasks": [{"source": "/in/x"}]}}
        for server in (one, two):  # each instance has accepted each token (and may remember that)
            for token in tokens:
                assert data_of(post(server, ME, token=token))["me"]["user"] == "mia"

        data_of(post(one, REVOKE, {"t": tokens[0]}, admin))  # through one instance...
        assert refused(two, tokens[0]), "the other instance still accepts a token revoked through the first"
        assert refused(two, tokens[0], CREATE_JOB, job_input), "a revoked token may still create a job"
        errors = asyncio.run(subscription_refused(two, tokens[0]))
        assert errors and errors[0]["extensions"]["code"] == UNAUTH, errors
        assert refused(one, tokens[0])

        done = jobledger(store_url, "token", "revoke", tokens[1].split("_")[1])  # ...on the store itself...
        assert done.returncode == 0, done.stderr
        assert refused(one, tokens[1]) and refused(two, tokens[1])

        data_of(post(two, 'mutation { disableUser(name: "mia") }', token=admin))  # ...or by disabling the user
        assert refused(one, tokens[2]) and refused(two, tokens[2])
    finally:
        for running in (one, two):
            if running is not None:
                stop_server(running)
        ledger.close()


async def test_a_subscription_stops_soon_after_its_token_is_revoked(site: Site) -> None:
    user, token = site.mint("member")
    start = await asyncio.to_thread(head, site.server)
    job = await asyncio.to_thread(site.job, token)
    async with TokenWS(site.server.ws, token) as ws:
        subs = {
            "jobProgress": await ws.subscribe(
                "subscription($id: ID!) { jobProgress(jobId: $id) { jobId } }", {"id": job["id"]}
            ),
            "jobUpdated": await ws.subscribe("subscription { jobUpdated { id } }"),
            "events": await ws.subscribe(
                "subscription($after: Long) { events(after: $after) { aggregateId } }", {"after": start}
            ),
        }
        assert (await subs["jobProgress"].next())["jobProgress"]["jobId"] == job["id"]
        while (await subs["events"].next())["events"]["aggregateId"] != job["id"]:
            pass  # the replay reaches the job
        heard = None  # jobUpdated sends nothing at once: change the job until it has started listening
        for _ in range(20):
            await asyncio.to_thread(site.bump, job["id"])
            if (heard := await poll(subs["jobUpdated"].inbox, 0.4)) is not None:
                break
        assert heard is not None and heard["payload"]["data"]["jobUpdated"]["id"] == job["id"], heard

        await asyncio.to_thread(lambda: data_of(post(site.server, REVOKE, {"t": token}, site.admin)))
        revoked = time.monotonic()
        stopped: dict[str, tuple[float, dict[str, Any]]] = {}
        while len(stopped) < len(subs) and time.monotonic() < revoked + RECHECK_S + 10:
            await asyncio.to_thread(site.bump, job["id"])  # a message is due on each of them
            for name, sub in subs.items():
                while name not in stopped and (msg := await poll(sub.inbox, 0.1)) is not None:
                    if errors_in(msg):
                        stopped[name] = (time.monotonic() - revoked, msg)
            await asyncio.sleep(0.2)
        assert set(stopped) == set(subs), (
            f"still running {RECHECK_S + 10:.0f} s after the revocation: {set(subs) - set(stopped)}"
        )
        for name, (after, msg) in stopped.items():
            assert errors_in(msg)[0]["extensions"]["code"] == UNAUTH, (name, msg)
            assert after < RECHECK_S + 2.5, f"{name} stopped {after:.1f} s after the revocation"
            if msg["type"] == "next":  # an execution error: the operation then completes
                assert await poll(subs[name].inbox, 2) == {"id": subs[name].id, "type": "complete"}, name
        await asyncio.to_thread(site.bump, job["id"])
        for name, sub in subs.items():
            assert await poll(sub.inbox, 0.3) is None, f"{name} went on after it stopped"
    print(
        f"\nsubscriptions of {user} stopped "
        + ", ".join(f"{n} {a:.1f} s" for n, (a, _) in stopped.items())
        + " after the revocation"
    )


# -- the actor ---------------------------------------------------------------------------------


def test_events_name_the_token_holder_whatever_x_jobledger_user_says(site: Site) -> None:
    member, member_token = site.mint("member")
    operator, operator_token = site.mint("operator")
    forged = {"X-Jobledger-User": "mallory"}

    job = site.job(member_token, **forged)
    assert job["user"] == member
    changed = data_of(post(site.server, BUMP, {"id": job["id"], "p": 7}, operator_token, headers=forged))
    assert changed["updateJob"]["modifier"] == operator
    queue = data_of(post(site.server, CREATE_QUEUE, {"code": f"q{next(site.numbers)}"}, operator_token, headers=forged))
    assert queue["createQueue"]["user"] == operator

    history = "query($id: ID) { events(aggregateId: $id) { nodes { type actor } } }"
    actors: dict[str, list[tuple[str, str]]] = {}
    for aggregate in (job["id"], job["tasks"]["nodes"][0]["id"], queue["createQueue"]["id"]):
        nodes = data_of(post(site.server, history, {"id": aggregate}, site.admin))["events"]["nodes"]
        actors[aggregate] = [(n["type"], n["actor"]) for n in nodes]
    assert {a for _, a in actors[job["id"]]} == {member, operator}, actors[job["id"]]
    assert actors[job["id"]][0] == ("Job.Created", member), actors[job["id"]]
    assert ("Job.Updated", operator) in actors[job["id"]], actors[job["id"]]
    assert {a for _, a in actors[job["tasks"]["nodes"][0]["id"]]} == {member}, actors
    assert {a for _, a in actors[queue["createQueue"]["id"]]} == {operator}, actors
    assert "mallory" not in json.dumps(actors)

    async def me_over_a_websocket() -> dict[str, Any]:
        async with TokenWS(site.server.ws, member_token, **forged) as ws:
            return await (await ws.subscribe(ME)).next()

    assert asyncio.run(me_over_a_websocket()) == {"me": {"user": member}}


# -- slowing down bad tokens -------------------------------------------------------------------


def timed(server: Server, token: str, address: str) -> tuple[float, str | None]:
    """How long a request with `token` from `address` took, and its error code (None: it worked)."""
    started = time.monotonic()
    answer = post(server, ME, token=token, address=address)
    return time.monotonic() - started, code_of(answer)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)  # the API layer, whatever the store
def test_bad_tokens_slow_their_address_down_but_never_a_token_that_works(store_url: str, tmp_path: Path) -> None:
    server, _ = start_with_auth(store_url, tmp_path)
    ledger = minting_ledger(store_url)
    try:
        good, unused = (ledger.identity.ensure_token("mia", "a", "member", actor="test").token for _ in range(2))
        noisy, elsewhere = fresh_address(), fresh_address()
        assert timed(server, good, noisy)[1] is None  # it works, and so is remembered

        bad = [timed(server, unknown_token(), noisy) for _ in range(7)]
        good_between = timed(server, good, noisy)
        bad.append(timed(server, unknown_token(), noisy))
        good_after = timed(server, good, noisy)
        bad_elsewhere = timed(server, unknown_token(), elsewhere)
        unused_first, unused_again = timed(server, unused, noisy), timed(server, unused, noisy)

        seconds = [round(s, 2) for s, _ in bad]
        assert {code for _, code in bad} == {UNAUTH}
        assert max(seconds[:5]) < 0.3, f"the first five bad tokens are not slowed: {seconds}"
        assert seconds[5] >= 0.1 and seconds[6] >= 0.2 and seconds[7] >= 0.35, f"then 0.1 s, 0.2 s, 0.4 s: {seconds}"
        for name, (took, code) in {"between": good_between, "after": good_after}.items():
            assert code is None and took < 0.3, f"a token that works was slowed ({name}): {took:.2f} s, {code}"
        assert bad_elsewhere[0] < 0.3, f"another address was slowed too: {bad_elsewhere}"
        # A good token that has not worked lately is slowed like any other (the address has 8
        # failures: 0.8 s), then, having worked, no more.
        assert unused_first[1] is None and unused_first[0] >= 0.7, unused_first
        assert unused_again[1] is None and unused_again[0] < 0.3, unused_again
        print(
            f"\nbad tokens from one address took {seconds} s; good ones {good_between[0]:.2f} s, {good_after[0]:.2f} s"
        )
    finally:
        stop_server(server)
        ledger.close()


# -- /readyz -----------------------------------------------------------------------------------

PUBLIC = {"status", "reason", "position", "head", "lag"}


def store_details_in(body: str, *secrets: str) -> list[str]:
    """Those of `secrets`, and of the words an exception or a connection string shows, that `body` says."""
    words = [
        *secrets,
        "postgres",
        "sqlite",
        "psycopg",
        "127.0.0.1",
        "5432",
        "error",
        "refused",
        "connection",
        "traceback",
        "exception",
    ]
    return [w for w in words if w.lower() in body.lower()]


def test_readyz_answers_without_a_token_and_shows_no_store_details(site: Site) -> None:
    response = httpx.get(f"{site.server.url}/readyz", timeout=10)
    assert response.status_code == 200, response.text
    assert set(response.json()) <= PUBLIC, response.json()
    assert not store_details_in(response.text, *_store_words(site.server.store_url)), response.text


def _store_words(store_url: str) -> list[str]:
    """The parts of a store URL that must not leave the server: path, database, schema, port."""
    parts = urlsplit(store_url)
    words = [*parts.path.split("/"), parts.query.removeprefix("schema="), str(parts.port or "")]
    return [w for w in words if w]


class Relay:
    """A TCP relay to PostgreSQL whose connections can all be cut at once; then it refuses
    new ones until it resumes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.sockets: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.resume()

    def resume(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def cut(self) -> None:
        with self.lock:
            doomed, self.sockets = [self.listener, *self.sockets], set()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target)
            except OSError:
                return
            with self.lock:
                self.sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_readyz_of_an_unreachable_store_shows_no_host_port_or_error(store_url: str, tmp_path: Path) -> None:
    parts = urlsplit(store_url)
    relay = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    relayed = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{relay.port}"))
    server = start_server(
        relayed, str(tmp_path / "server.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(tmp_path / "token")
    )
    try:
        relay.cut()
        deadline, response = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            response = httpx.get(f"{server.url}/readyz", timeout=30)
            if response.status_code != 200:
                break
            time.sleep(0.2)
        assert response is not None and response.status_code == 503, (response, response and response.text)
        assert set(response.json()) <= PUBLIC, response.json()
        said = store_details_in(response.text, *_store_words(relayed))
        assert not said, f"/readyz tells {said}: {response.text}"
        print(f"\n/readyz with its store gone: {response.status_code} {response.text}")
        assert server.process.poll() is None, "the server exited when its store went away"
    finally:
        relay.resume()
        stop_server(server)
        relay.cut()
