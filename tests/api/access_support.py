"""What the access-control tests (test_access.py, test_access_live.py) share: the roles of
their table, callers with a token and, when asked, an address of their own, websockets that
sign in with a token, and the world the table runs in (groups `a` and `b`, a user in each
role, a queue and jobs in each group, and fresh objects and leases on demand)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import secrets
import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import websockets
from argon2 import PasswordHasher
from websockets.typing import Subprotocol

from domain.ledger import Ledger
from domain.tokens import SecretHasher
from tests.api.conftest import Server, start_server
from tests.api.test_subscriptions import CLOSED, WAIT, GraphQLWS

# -- who calls -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Role:
    """A column of the table: a user (None: no token at all), their only group and their
    role in it, and the groups whose lists they read (None: every group, a site admin's)."""

    name: str
    user: str | None
    group: str | None
    role: str | None
    reads: frozenset[str] | None


ROLES: dict[str, Role] = {
    r.name: r
    for r in (
        Role("none", None, None, None, frozenset()),
        Role("viewer", "vic", "a", "viewer", frozenset({"a"})),
        Role("member", "mia", "a", "member", frozenset({"a"})),
        Role("operator", "otto", "a", "operator", frozenset({"a"})),
        Role("worker", "wendy", "a", "worker", frozenset()),  # a worker's token reads no list
        Role("admin", "ada", "a", "admin", frozenset({"a"})),
        Role("site", "admin", "admins", "admin", None),  # the first admin: a site admin
        Role("other", "bob", "b", "member", frozenset({"b"})),  # a member of ANOTHER group
    )
}
B_WORKER = "bea"  # a worker of group b, whose leases the cross-group tests need
BYSTANDER = "bystander"  # a user in no group, whose tokens others try to make and revoke


def reads(role: Role, group: str | None) -> bool:
    """Whether `role` reads the lists of `group` (None: an object of no group)."""
    return role.reads is None or (group is not None and group in role.reads)


_addresses = itertools.count(1)


def fresh_address() -> str:
    """A loopback address no request of this test session came from: the server slows down
    bad tokens per address, so tests that show many bad tokens show each from its own."""
    n = next(_addresses)
    return f"127.77.{n // 250 % 250}.{n % 250 + 1}"


def unknown_token() -> str:
    """A well-formed token that no store issued."""
    secret = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(43))
    return f"jl_{secrets.token_hex(6)}_{secret}"


def post(
    server: Server,
    document: str,
    variables: dict[str, Any] | None = None,
    token: str | None = None,
    *,
    address: str | None = None,
    headers: dict[str, str] | None = None,
    client: httpx.Client | None = None,
) -> dict[str, Any]:
    """POST a GraphQL request with `token` (none: no Authorization header), from `address`
    when given; the whole JSON answer."""
    sent = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
    body = {"query": document, "variables": variables or {}}
    if client is not None and address is None:
        return client.post(server.graphql, json=body, headers=sent).json()  # type: ignore[no-any-return]
    transport = httpx.HTTPTransport(local_address=address) if address else None
    with httpx.Client(transport=transport, timeout=30) as fresh:
        return fresh.post(server.graphql, json=body, headers=sent).json()  # type: ignore[no-any-return]


def data_of(answer: dict[str, Any]) -> dict[str, Any]:
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]  # type: ignore[no-any-return]


def code_of(answer: dict[str, Any]) -> str | None:
    """The first error's code; None for an answer without errors."""
    errors = answer.get("errors") or []
    return (errors[0].get("extensions") or {}).get("code") if errors else None


def head(server: Server) -> int:
    return int(httpx.get(f"{server.url}/readyz", timeout=10).json()["head"])


def like_missing(hidden: Any, hidden_ref: str, missing: Any, missing_ref: str) -> bool:
    """Whether two answers are the same but for the reference each was asked about (as a
    whole word): what a caller gets for a hidden object tells them nothing a missing one
    would not."""

    def masked(answer: Any, ref: str) -> str:
        return re.sub(rf"(?<![\w-]){re.escape(ref)}(?![\w-])", "<ref>", json.dumps(answer, sort_keys=True))

    return masked(hidden, hidden_ref) == masked(missing, missing_ref)


def start_with_auth(store_url: str, tmp: Path, name: str = "server") -> tuple[Server, str | None]:
    """A server with authentication on, and the first admin's token it wrote (None when
    the store had users already, and so it made no first admin)."""
    token_file = tmp / f"{name}.token"
    server = start_server(
        store_url, str(tmp / f"{name}.log"), JOBLEDGER_AUTH="on", JOBLEDGER_TOKEN_FILE=str(token_file)
    )
    return server, token_file.read_text().strip() if token_file.exists() else None


def minting_ledger(store_url: str) -> Ledger:
    """A ledger on the store that mints tokens as `jobledger token create` does, with an
    argon2 hash a thousand times cheaper: the hash carries its parameters, so the server
    checks it as cheaply (on a busy two-core machine each default hash takes 0.4 s)."""
    ledger = Ledger(store_url)
    ledger.identity.hasher = SecretHasher(PasswordHasher(time_cost=1, memory_cost=64, parallelism=1))
    return ledger


def expired_token(ledger: Ledger, user: str) -> str:
    """A token of `user` that expired a day ago, issued with the ledger's clock set two
    days back (the shortest lifetime a token may be given is a minute)."""
    clock = ledger.identity.clock
    ledger.identity.clock = lambda: datetime.now(UTC) - timedelta(days=2)
    try:
        return ledger.identity.issue_token(user, expires_in="1d", actor="test").token
    finally:
        ledger.identity.clock = clock


# -- websockets ----------------------------------------------------------------------------


class TokenWS(GraphQLWS):
    """The graphql-transport-ws client of test_subscriptions, signing in with a token in the
    connection_init payload (none: an empty payload), from `address` when given."""

    def __init__(self, url: str, token: str | None, address: str | None = None, **init: str) -> None:
        super().__init__(url, init={**({"Authorization": f"Bearer {token}"} if token else {}), **init})
        self.address = address

    async def __aenter__(self) -> TokenWS:
        self.ws = await websockets.connect(
            self.url,
            subprotocols=[Subprotocol(self.protocol)],
            open_timeout=WAIT,
            local_addr=(self.address, 0) if self.address else None,
        )
        await self.send({"type": "connection_init", "payload": self.init_payload})
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        while msg["type"] == "ka":
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), WAIT))
        assert msg["type"] == "connection_ack", msg
        self.ack = msg
        self._reader = asyncio.create_task(self._read())
        return self


async def poll(inbox: asyncio.Queue[Any], timeout: float) -> dict[str, Any] | None:
    """The next message of a subscription's inbox within `timeout`, else None."""
    try:
        item = await asyncio.wait_for(inbox.get(), timeout)
    except TimeoutError:
        return None
    assert item is not CLOSED, "the server closed the connection"
    return item[1]  # type: ignore[no-any-return]


def errors_in(msg: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors of a subscription message: an `error` frame's, or a `next` frame's."""
    if msg["type"] == "error":
        payload = msg["payload"]
        return payload if isinstance(payload, list) else [payload]
    return msg.get("payload", {}).get("errors") or []


# -- the world -----------------------------------------------------------------------------

CREATE_GROUP = "mutation($code: String!) { createGroup(code: $code) { code } }"
CREATE_USER = "mutation($name: String!) { createUser(name: $name) { name } }"
ADD_MEMBER = "mutation($g: String!, $u: String!, $r: String!) { addMember(group: $g, user: $u, role: $r) { code } }"
CREATE_TOKEN = "mutation($user: String) { createToken(user: $user) { token prefix } }"
REVOKE_TOKEN = "mutation($t: String!) { revokeToken(token: $t) }"
CREATE_QUEUE = "mutation($code: String!, $g: String) { createQueue(input: {code: $code, group: $g}) { id } }"
CREATE_JOB = """
mutation($input: CreateJobInput!) { createJob(input: $input) { id tasks { nodes { id } } } }
"""
CLAIM = 'mutation($q: [String!]) { claimTasks(worker: "box", queues: $q, limit: 1) { id } }'
BUMP = "mutation($id: ID!, $p: Int) { updateJob(id: $id, input: {priority: $p}) { id } }"
GROUP_OF = """
query($id: ID!) {
  queue(id: $id) { group }  job(id: $id) { queue { group } }  task(id: $id) { job { queue { group } } }
}
"""


@dataclass
class World:
    """A server with authentication on and what the table needs in it. `ids` names the
    shared objects: the queues qa, qwork (group a), qb and qbwork (group b; the *work
    queues hold the jobs whose tasks the workers claim); the jobs job_m (the member's, in
    qa), job_o (the operator's, in qa) and job_b (the other group's member's, in qb); and
    task_m, task_o and task_b, a task of each."""

    server: Server
    http: httpx.Client
    ledger: Ledger  # mints tokens on the store (see minting_ledger)
    tokens: dict[str, str]  # role name (and B_WORKER) -> token
    ids: dict[str, str] = field(default_factory=dict)
    groups: dict[str, str | None] = field(default_factory=dict)  # aggregate id -> owning group
    mark: int = 0  # the store's position before the first queue of a or b
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    def answer(self, role: str, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The answer to `role`'s request (ROLES' names, or B_WORKER)."""
        return post(self.server, document, variables, self.tokens.get(role), client=self.http)

    def data(self, role: str, document: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        return data_of(self.answer(role, document, variables))

    def ws(self, role: str) -> TokenWS:
        return TokenWS(self.server.ws, self.tokens.get(role))

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{next(self._numbers)}"

    def priority(self) -> int:
        """A priority no change before this one set (mod 999): each makes an event."""
        return 1 + next(self._numbers) % 999

    def note(self, group: str, *ids: str) -> None:
        self.groups.update(dict.fromkeys(ids, group))

    def group_of(self, aggregate_id: str) -> str | None:
        """The group owning a queue, job or task (None: anything else), as the site admin sees it."""
        if aggregate_id not in self.groups:
            found = self.data("site", GROUP_OF, {"id": aggregate_id})
            queue = (
                found["queue"]
                or (found["job"] or {}).get("queue")
                or ((found["task"] or {}).get("job") or {}).get("queue")
            )
            self.groups[aggregate_id] = queue["group"] if queue else None
        return self.groups[aggregate_id]

    def fresh_queue(self, group: str = "a") -> str:
        queue_id = str(self.data("site", CREATE_QUEUE, {"code": self.unique("q"), "g": group})["createQueue"]["id"])
        self.note(group, queue_id)
        return queue_id

    def fresh_job(self, role: str, queue: str = "qa", tasks: int = 1) -> str:
        """A job submitted by `role` to `queue`."""
        spec = {"queue": queue, "destination": "/out", "tasks": [{"source": f"/in/{i}"} for i in range(tasks)]}
        job = self.data(role, CREATE_JOB, {"input": spec})["createJob"]
        group = "b" if queue.startswith("qb") else "a"
        self.note(group, job["id"], *(t["id"] for t in job["tasks"]["nodes"]))
        return str(job["id"])

    def fresh_lease(self, group: str = "a") -> str:
        """A lease of a new task, held by the group's worker."""
        queue, worker = ("qwork", "worker") if group == "a" else ("qbwork", B_WORKER)
        self.fresh_job("site", queue)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            leases = self.data(worker, CLAIM, {"q": [queue]})["claimTasks"]
            if leases:
                return str(leases[0]["id"])
            time.sleep(0.05)  # the new task is not claimable yet
        raise AssertionError(f"the worker of group {group} could claim nothing in {queue}")

    def fresh_user(self, group: str | None = None, role: str = "viewer") -> str:
        name = self.unique("user")
        self.data("site", CREATE_USER, {"name": name})
        if group is not None:
            self.data("site", ADD_MEMBER, {"g": group, "u": name, "r": role})
        return name

    def fresh_token(self, user: str) -> str:
        """A new token of `user`, minted on the store; its prefix."""
        return self.ledger.identity.ensure_token(user, actor="test").prefix

    def mint(self, user: str, group: str | None = None, role: str | None = None) -> str:
        """A new token of `user`, made (with `group`) when missing, of `role` in `group`."""
        return self.ledger.identity.ensure_token(user, group, role, actor="test").token

    def bump(self, job: str) -> None:
        """A change to the job `ids[job]`, by the site admin."""
        self.data("site", BUMP, {"id": self.ids[job], "p": self.priority()})

    def random_id(self) -> str:
        return str(uuid.uuid4())


def build_world(server: Server, admin_token: str, http: httpx.Client, ledger: Ledger) -> World:
    """Groups a and b, a user in each role of ROLES (plus B_WORKER and BYSTANDER), the
    shared queues and jobs (see World)."""
    world = World(server, http, ledger, {"site": admin_token})
    for role in ROLES.values():
        if role.user is not None and role.name != "site":
            world.tokens[role.name] = world.mint(role.user, role.group, role.role)
    world.tokens[B_WORKER] = world.mint(B_WORKER, "b", "worker")
    world.data("site", CREATE_USER, {"name": BYSTANDER})
    world.mark = head(server)
    for code, group in (("qa", "a"), ("qwork", "a"), ("qb", "b"), ("qbwork", "b")):
        world.ids[code] = str(world.data("site", CREATE_QUEUE, {"code": code, "g": group})["createQueue"]["id"])
        world.note(group, world.ids[code])
    world.ids["job_m"] = world.fresh_job("member", tasks=2)
    world.ids["job_o"] = world.fresh_job("operator")
    world.ids["job_b"] = world.fresh_job("other", "qb")
    for job, task in (("job_m", "task_m"), ("job_o", "task_o"), ("job_b", "task_b")):
        found = world.data("site", "query($id: ID!) { tasks(jobId: $id) { nodes { id } } }", {"id": world.ids[job]})
        world.ids[task] = found["tasks"]["nodes"][0]["id"]
    return world
