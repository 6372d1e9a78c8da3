"""Who may do what (issue 13), over real HTTP and websockets, on SQLite and PostgreSQL.

TABLE is the rule book: for every query, mutation and subscription the server serves
(the contract's and the identity operations beside them), the answer each role gets when
it asks about group `a`'s objects. OPERATIONS says how each row is asked and what `ok` and
`empty` mean for it. One server per store runs the whole module; objects a row changes
for good (deletes, archives, leases) are made afresh for each cell.

The cross-group tests at the end look the other way: a member of `a` can neither read,
count, change nor hear of group `b`'s queues, jobs, tasks and events, and what they get
for `b`'s objects is what they would get for objects that do not exist.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import graphql
import httpx
import pytest

from tests.api.access_support import (
    BYSTANDER,
    REVOKE_TOKEN,
    ROLES,
    Role,
    TokenWS,
    World,
    build_world,
    code_of,
    data_of,
    errors_in,
    expired_token,
    fresh_address,
    head,
    like_missing,
    minting_ledger,
    poll,
    post,
    reads,
    start_with_auth,
    unknown_token,
)
from tests.api.conftest import stop_server
from tests.api.test_subscriptions import WAIT, Subscription
from tests.conftest import fresh_schema

CONTRACT = Path(__file__).parents[2] / "api" / "contract.graphql"
OK, EMPTY, NULL = "ok", "empty", "null"
UNAUTH, FORBIDDEN, NOT_FOUND = "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"
QUIET = 1.0  # seconds a subscription of a role that reads nothing is watched for a message

# Each row: an operation on group a's objects (see OPERATIONS), then the answer of each
# role of access_support.ROLES, in this order. ok: it works (OPERATIONS checks what it
# answered, and that lists show only what the role reads); empty: it works and shows
# nothing of group a (no node, totalCount 0 for a, no message); null: an object lookup
# answers null, as for a missing object; UNAUTH, FORBID, NOTFOUND: that error code.
TABLE = """
operation                   none    viewer  member  operator worker  admin   site    other
queue(id)                   UNAUTH  ok      ok      ok       ok      ok      ok      null
queue(code)                 UNAUTH  ok      ok      ok       ok      ok      ok      null
queues                      UNAUTH  ok      ok      ok       empty   ok      ok      empty
job                         UNAUTH  ok      ok      ok       ok      ok      ok      null
jobs                        UNAUTH  ok      ok      ok       empty   ok      ok      empty
task                        UNAUTH  ok      ok      ok       ok      ok      ok      null
tasks                       UNAUTH  ok      ok      ok       ok      ok      ok      empty
events(aggregateId)         UNAUTH  ok      ok      ok       empty   ok      ok      empty
events                      UNAUTH  ok      ok      ok       empty   ok      ok      empty
me                          UNAUTH  ok      ok      ok       ok      ok      ok      ok
groups                      UNAUTH  ok      ok      ok       ok      ok      ok      empty
users                       UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
workers                     UNAUTH  ok      ok      ok       empty   ok      ok      empty
throughput                  UNAUTH  ok      ok      ok       empty   ok      ok      ok
createQueue                 UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      FORBID
createQueue(ownGroup)       UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      FORBID
updateQueue                 UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
archiveQueue                UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
terminateQueue              UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
deleteQueue                 UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
addQueueTags                UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
removeQueueTags             UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
createJob                   UNAUTH  FORBID  ok      ok       FORBID  ok      ok      NOTFOUND
createJob(defaultQueue)     UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
createJob(command)          UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  FORBID  NOTFOUND
updateJob(member's)         UNAUTH  FORBID  ok      ok       FORBID  ok      ok      NOTFOUND
updateJob(operator's)       UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
deleteJob(member's)         UNAUTH  FORBID  ok      ok       FORBID  ok      ok      NOTFOUND
deleteJob(operator's)       UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
addTasks(member's)          UNAUTH  FORBID  ok      ok       FORBID  ok      ok      NOTFOUND
addTasks(operator's)        UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
updateTasks(member's)       UNAUTH  FORBID  ok      ok       FORBID  ok      ok      NOTFOUND
updateTasks(operator's)     UNAUTH  FORBID  FORBID  ok       FORBID  ok      ok      NOTFOUND
claimTasks                  UNAUTH  FORBID  FORBID  FORBID   ok      FORBID  ok      FORBID
heartbeat                   UNAUTH  FORBID  FORBID  FORBID   ok      FORBID  ok      NOTFOUND
completeTask                UNAUTH  FORBID  FORBID  FORBID   ok      FORBID  ok      NOTFOUND
completeTasks               UNAUTH  FORBID  FORBID  FORBID   ok      FORBID  ok      NOTFOUND
failTask                    UNAUTH  FORBID  FORBID  FORBID   ok      FORBID  ok      NOTFOUND
releaseTask                 UNAUTH  FORBID  FORBID  FORBID   ok      FORBID  ok      NOTFOUND
createUser                  UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
disableUser                 UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
enableUser                  UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
createGroup                 UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
updateGroup                 UNAUTH  FORBID  FORBID  FORBID   FORBID  ok      ok      FORBID
updateGroup(allowCommands)  UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
addMember                   UNAUTH  FORBID  FORBID  FORBID   FORBID  ok      ok      FORBID
changeRole                  UNAUTH  FORBID  FORBID  FORBID   FORBID  ok      ok      FORBID
removeMember                UNAUTH  FORBID  FORBID  FORBID   FORBID  ok      ok      FORBID
createToken                 UNAUTH  ok      ok      ok       ok      ok      ok      ok
createToken(anotherUser)    UNAUTH  FORBID  FORBID  FORBID   FORBID  FORBID  ok      FORBID
revokeToken                 UNAUTH  ok      ok      ok       ok      ok      ok      ok
revokeToken(another's)      UNAUTH  NOTFOUND NOTFOUND NOTFOUND NOTFOUND NOTFOUND ok     NOTFOUND
jobProgress                 UNAUTH  ok      ok      ok       ok      ok      ok      NOTFOUND
jobUpdated                  UNAUTH  ok      ok      ok       empty   ok      ok      empty
events(subscription)        UNAUTH  ok      ok      ok       empty   ok      ok      empty
"""
# Where the rules leave room, the table says: `tasks(jobId)` is a lookup by id, open to a
# worker like job(id) and task(id); group-level operations on a group the caller is not in
# (createQueue, updateGroup, members) are FORBIDDEN exactly as for a group that does not
# exist (test_a_hidden_group_is_refused_as_a_missing_one); a group that does not allow
# commands refuses them to a site admin too (they must allow them first).

_WORDS = {"ok": OK, "empty": EMPTY, "null": NULL, "UNAUTH": UNAUTH, "FORBID": FORBIDDEN, "NOTFOUND": NOT_FOUND}


def parse_table(text: str) -> dict[str, dict[str, str]]:
    header, *rows = [line.split() for line in text.strip().splitlines()]
    assert tuple(header[1:]) == tuple(ROLES), f"the table's columns must be {list(ROLES)}"
    table: dict[str, dict[str, str]] = {}
    for label, *cells in rows:
        assert len(cells) == len(ROLES), f"row {label} has {len(cells)} cells"
        table[label] = {role: _WORDS[cell] for role, cell in zip(ROLES, cells, strict=True)}
    return table


EXPECTED = parse_table(TABLE)

# -- how each row is asked -----------------------------------------------------------------

Check = Callable[[World, Role, Any], None]
Listen = Callable[[World, Role, Subscription], Awaitable[dict[str, Any]]]


def no_variables(world: World, role: Role) -> dict[str, Any]:
    return {}


def answered(world: World, role: Role, value: Any) -> None:
    assert value is not None and value is not False


def not_expected(world: World, role: Role, value: Any) -> None:
    raise AssertionError(f"the table expects no `empty` answer of this operation, got {value}")


@dataclass(frozen=True)
class Operation:
    """How a row is asked: its document, the variables of a cell (made fresh when the
    operation uses up its object), what `ok` and `empty` mean, for subscriptions how to
    listen, and what to undo after the cell."""

    document: str
    variables: Callable[[World, Role], dict[str, Any]] = no_variables
    ok: Check = answered
    empty: Check = not_expected
    listen: Listen | None = None
    after: Callable[[World], None] | None = None

    @property
    def kind(self) -> str:
        return str(self._definition.operation.value)

    @property
    def field(self) -> str:
        return str(self._definition.selection_set.selections[0].name.value)  # type: ignore[attr-defined]

    @property
    def _definition(self) -> graphql.OperationDefinitionNode:
        definition = graphql.parse(self.document).definitions[0]
        assert isinstance(definition, graphql.OperationDefinitionNode)
        return definition


def listing(key: str, target: str, group_of: Callable[[World, dict[str, Any]], str | None], present: bool) -> Check:
    """A list: the `target` object in it (or not), only objects of groups the role reads,
    and a totalCount (where there is one) that counts what is shown."""

    def check(world: World, role: Role, value: Any) -> None:
        nodes = value["nodes"]
        if "totalCount" in value:
            assert value["totalCount"] == len(nodes), value
        unreadable = [n for n in nodes if not reads(role, group_of(world, n))]
        assert not unreadable, f"{role.name} was shown objects of groups they do not read: {unreadable[:5]}"
        shown = {n[key] for n in nodes}
        assert (world.ids[target] in shown) == present, f"{target} {'missing from' if present else 'in'} {value}"

    return check


def of_queue(world: World, node: dict[str, Any]) -> str | None:
    return node["group"]  # type: ignore[no-any-return]


def of_job(world: World, node: dict[str, Any]) -> str | None:
    return node["queue"]["group"]  # type: ignore[no-any-return]


def of_event(world: World, node: dict[str, Any]) -> str | None:
    return world.group_of(node["aggregateId"])


def listed(key: str, target: str, group_of: Callable[[World, dict[str, Any]], str | None]) -> tuple[Check, Check]:
    """What `ok` and `empty` mean for a list (see `listing`)."""
    return listing(key, target, group_of, True), listing(key, target, group_of, False)


def one(key: str, **expected: str) -> Check:
    """An object: the one `ids[key]` names, with these fields."""

    def check(world: World, role: Role, value: Any) -> None:
        assert value["id"] == world.ids[key], value
        for name, wanted in expected.items():
            assert value[name] == wanted, value

    return check


def tasks_of_m(world: World, role: Role, value: Any) -> None:
    assert value["totalCount"] == len(value["nodes"]) >= 1, value
    assert world.ids["task_m"] in {n["id"] for n in value["nodes"]}, value


def no_tasks(world: World, role: Role, value: Any) -> None:
    assert value == {"totalCount": 0, "nodes": []}, value


def history_of_m(world: World, role: Role, value: Any) -> None:
    ids = {n["aggregateId"] for n in value["nodes"]}
    assert ids == {world.ids["job_m"]}, value


def no_history(world: World, role: Role, value: Any) -> None:
    assert value["nodes"] == [], value


def me(world: World, role: Role, value: Any) -> None:
    assert value["user"] == role.user and value["auth"] is True, value
    assert value["siteAdmin"] == (role.name == "site"), value
    assert value["groups"] == [{"group": role.group, "role": role.role}], value


def a_worker_holds_a_task(world: World, role: Role) -> dict[str, Any]:
    world.fresh_lease("a")  # the worker "box" holds a task of group a
    return {}


def workers_listing(present: bool) -> Check:
    """`workers` (api/dashboard.py): the tasks they hold, of groups the role reads only;
    one of group a's among them, or none."""

    def check(world: World, role: Role, value: Any) -> None:
        held = [(w["name"], t) for w in value for t in w["tasks"]]
        unreadable = [t for _, t in held if not reads(role, t["job"]["queue"]["group"])]
        assert not unreadable, f"{role.name} was shown tasks of groups they do not read: {unreadable[:5]}"
        in_a = [name for name, t in held if t["job"]["queue"]["group"] == "a"]
        assert bool(in_a) == present and set(in_a) <= {"box"}, value
        if role.reads == frozenset():
            assert value == [], value

    return check


def minutes(quiet: bool) -> Check:
    """`throughput(minutes: 5)`: five minutes, oldest first; all zero for a role that reads nothing."""

    def check(world: World, role: Role, value: Any) -> None:
        assert len(value) == 5 and [p["minute"] for p in value] == sorted(p["minute"] for p in value), value
        assert all(p["done"] >= 0 and p["failed"] >= 0 and p["queued"] >= 0 for p in value), value
        if quiet:
            assert all(p["done"] == p["failed"] == p["queued"] == 0 for p in value), value

    return check


def group_list(present: bool) -> Check:
    def check(world: World, role: Role, value: Any) -> None:
        codes = [g["code"] for g in value]
        assert ("a" in codes) == present, value
        if role.reads is not None:
            assert codes == [role.group], f"{role.name} is in group {role.group} alone, and was shown {codes}"

    return check


def every_user(world: World, role: Role, value: Any) -> None:
    names = {u["name"] for u in value}
    assert {r.user for r in ROLES.values() if r.user} <= names, value


def queue_of_a(world: World, role: Role, value: Any) -> None:
    assert value["group"] == "a", value
    world.note("a", value["id"])


def queue_of_own_group(world: World, role: Role, value: Any) -> None:
    assert value["group"] == role.group, f"a queue made without a group belongs to the maker's only group: {value}"
    world.note(value["group"], value["id"])


def new_job(group: str) -> Check:
    def check(world: World, role: Role, value: Any) -> None:
        assert (value["user"], value["queue"]["group"]) == (role.user, group), value
        world.note(group, value["id"], *(t["id"] for t in value["tasks"]["nodes"]))

    return check


def new_tasks(world: World, role: Role, value: Any) -> None:
    assert len(value) == 1, value
    world.note("a", value[0]["id"])


def token_of(user: str | None) -> Check:
    def check(world: World, role: Role, value: Any) -> None:
        holder = user or role.user
        assert value["user"] == holder and value["token"].startswith(f"jl_{value['prefix']}_"), value

    return check


def allow_no_commands(world: World) -> None:
    world.data("site", 'mutation { updateGroup(code: "a", allowCommands: false) { code } }')


def job_input(queue: str | None, source: Any = "/in/x") -> Callable[[World, Role], dict[str, Any]]:
    def variables(world: World, role: Role) -> dict[str, Any]:
        spec: dict[str, Any] = {"destination": "/out", "tasks": [{"source": source}]}
        return {"input": {**spec, **({"queue": queue} if queue else {})}}

    return variables


def with_id(key: str, **more: Any) -> Callable[[World, Role], dict[str, Any]]:
    return lambda world, role: {"id": world.ids[key], **more}


def priority_of(job: str) -> Callable[[World, Role], dict[str, Any]]:
    return lambda world, role: {"id": world.ids[job], "p": world.priority()}


def tasks_to_add(job: str) -> Callable[[World, Role], dict[str, Any]]:
    return lambda world, role: {"id": world.ids[job], "tasks": [{"source": f"/in/{world.unique('t')}"}]}


def task_update(job: str, task: str) -> Callable[[World, Role], dict[str, Any]]:
    return lambda world, role: {"id": world.ids[job], "tasks": [{"id": world.ids[task], "priority": 3}]}


def fresh_lease(world: World, role: Role) -> dict[str, Any]:
    return {"l": world.fresh_lease()}


def fresh_queue(world: World, role: Role) -> dict[str, Any]:
    return {"id": world.fresh_queue()}


def fresh_job_of(submitter: str) -> Callable[[World, Role], dict[str, Any]]:
    return lambda world, role: {"id": world.fresh_job(submitter)}


def a_name(prefix: str) -> Callable[[World, Role], dict[str, Any]]:
    return lambda world, role: {"name": world.unique(prefix)}


# -- subscriptions: listening while group a's and group b's jobs change ------------------------


def first_message(field: str) -> Listen:
    async def listen(world: World, role: Role, sub: Subscription) -> dict[str, Any]:
        msg = await poll(sub.inbox, WAIT)
        assert msg is not None, f"no message of {field} within {WAIT} s"
        errors = errors_in(msg)
        return {"data": None, "errors": errors} if errors else {"data": {field: [msg["payload"]["data"][field]]}}

    return listen


def changes(field: str, key: str) -> Listen:
    """Messages of a subscription while the site admin changes job_m (group a), then job_b
    (group b), round after round: until one about job_m arrives; or two about job_b (b is
    changed after a in each round, so a's would have come first); or, for a role that reads
    no group, for QUIET seconds."""

    async def listen(world: World, role: Role, sub: Subscription) -> dict[str, Any]:
        seen: list[dict[str, Any]] = []
        of_b = 0
        deadline = time.monotonic() + (QUIET if role.reads == frozenset() else WAIT)
        while time.monotonic() < deadline and of_b < 2:
            await asyncio.to_thread(world.bump, "job_m")
            await asyncio.to_thread(world.bump, "job_b")
            while (msg := await poll(sub.inbox, 0.3)) is not None:
                if errors := errors_in(msg):
                    return {"data": None, "errors": errors}
                seen.append(msg["payload"]["data"][field])
                if seen[-1][key] == world.ids["job_m"]:
                    return {"data": {field: seen}}
                of_b += seen[-1][key] == world.ids["job_b"]
        return {"data": {field: seen}}

    return listen


def heard(key: str, group_of: Callable[[World, dict[str, Any]], str | None], present: bool) -> Check:
    def check(world: World, role: Role, value: Any) -> None:
        unreadable = [m for m in value if not reads(role, group_of(world, m))]
        assert not unreadable, f"{role.name} heard of objects of groups they do not read: {unreadable[:5]}"
        assert (world.ids["job_m"] in {m[key] for m in value}) == present, value

    return check


def progress_of_m(world: World, role: Role, value: Any) -> None:
    assert value[0]["jobId"] == world.ids["job_m"], value


# -- the operations ----------------------------------------------------------------------------

EVENTS_PAGE = "query($after: Long) { events(after: $after, first: 500) { nodes { aggregateId aggregateType } } }"
JOB_FIELDS = "id user queue { code group } tasks { nodes { id } }"
LEASE_OPS = {
    "heartbeat": "mutation($l: ID!) { heartbeat(leaseId: $l, progress: 10) { id } }",
    "completeTask": "mutation($l: ID!) { completeTask(leaseId: $l) { id status } }",
    "completeTasks": "mutation($l: ID!) { completeTasks(completions: [{leaseId: $l}]) { id status } }",
    "failTask": 'mutation($l: ID!) { failTask(leaseId: $l, error: "cell") { id status } }',
    "releaseTask": "mutation($l: ID!) { releaseTask(leaseId: $l) { id status } }",
}
QUEUE_OPS = {
    "updateQueue": 'mutation($id: ID!) { updateQueue(id: $id, input: {description: "changed"}) { id } }',
    "archiveQueue": "mutation($id: ID!) { archiveQueue(id: $id) { id state } }",
    "terminateQueue": "mutation($id: ID!) { terminateQueue(id: $id) { id } }",
    "deleteQueue": "mutation($id: ID!) { deleteQueue(id: $id) }",
    "addQueueTags": 'mutation($id: ID!) { addQueueTags(id: $id, tags: {cell: "x"}) { id } }',
    "removeQueueTags": 'mutation($id: ID!) { removeQueueTags(id: $id, keys: ["cell"]) { id } }',
}
JOB_OPS = {
    "updateJob": "mutation($id: ID!, $p: Int) { updateJob(id: $id, input: {priority: $p}) { id } }",
    "deleteJob": "mutation($id: ID!) { deleteJob(id: $id) }",
    "addTasks": "mutation($id: ID!, $tasks: [TaskInput!]!) { addTasks(jobId: $id, tasks: $tasks) { id } }",
    "updateTasks": "mutation($id: ID!, $tasks: [TaskUpdateInput!]!) { updateTasks(jobId: $id, tasks: $tasks) { id } }",
}
S_PROGRESS = "subscription($id: ID!) { jobProgress(jobId: $id) { jobId status } }"
S_UPDATED = "subscription { jobUpdated { id queue { group } } }"
S_EVENTS = "subscription($after: Long) { events(after: $after) { aggregateId aggregateType } }"

OPERATIONS: dict[str, Operation] = {
    "queue(id)": Operation("query($id: ID) { queue(id: $id) { id group } }", with_id("qa"), one("qa", group="a")),
    "queue(code)": Operation(
        "query($code: String) { queue(code: $code) { id group } }", lambda w, r: {"code": "qa"}, one("qa")
    ),
    "queues": Operation(
        "{ queues(first: 500) { totalCount nodes { id group } } }", no_variables, *listed("id", "qa", of_queue)
    ),
    "job": Operation("query($id: ID!) { job(id: $id) { id user } }", with_id("job_m"), one("job_m", user="mia")),
    "jobs": Operation(
        "{ jobs(first: 500) { totalCount nodes { id queue { group } } } }",
        no_variables,
        *listed("id", "job_m", of_job),
    ),
    "task": Operation("query($id: ID!) { task(id: $id) { id } }", with_id("task_m"), one("task_m")),
    "tasks": Operation(
        "query($id: ID!) { tasks(jobId: $id) { totalCount nodes { id } } }", with_id("job_m"), tasks_of_m, no_tasks
    ),
    "events(aggregateId)": Operation(
        "query($id: ID) { events(aggregateId: $id) { nodes { aggregateId } } }",
        with_id("job_m"),
        history_of_m,
        no_history,
    ),
    "events": Operation(EVENTS_PAGE, lambda w, r: {"after": w.mark}, *listed("aggregateId", "job_m", of_event)),
    "me": Operation("{ me { user siteAdmin auth groups { group role } } }", ok=me),
    "groups": Operation("{ groups { code members { user role } } }", ok=group_list(True), empty=group_list(False)),
    "users": Operation("{ users { name } }", ok=every_user),
    "workers": Operation(
        "{ workers { name tasks { id job { queue { group } } } } }",
        a_worker_holds_a_task,
        workers_listing(True),
        workers_listing(False),
    ),
    "throughput": Operation(
        "{ throughput(minutes: 5) { minute done failed queued } }", ok=minutes(False), empty=minutes(True)
    ),
    "createQueue": Operation(
        'mutation($code: String!) { createQueue(input: {code: $code, group: "a"}) { id group } }',
        lambda w, r: {"code": w.unique("cq")},
        queue_of_a,
    ),
    "createQueue(ownGroup)": Operation(
        "mutation($code: String!) { createQueue(input: {code: $code}) { id group } }",
        lambda w, r: {"code": w.unique("cq")},
        queue_of_own_group,
    ),
    **{name: Operation(doc, with_id("qa")) for name, doc in QUEUE_OPS.items()},
    **{name: Operation(QUEUE_OPS[name], fresh_queue) for name in ("archiveQueue", "terminateQueue", "deleteQueue")},
    "createJob": Operation(
        f"mutation($input: CreateJobInput!) {{ createJob(input: $input) {{ {JOB_FIELDS} }} }}",
        job_input("qa"),
        new_job("a"),
    ),
    "createJob(defaultQueue)": Operation(
        f"mutation($input: CreateJobInput!) {{ createJob(input: $input) {{ {JOB_FIELDS} }} }}",
        job_input(None),
        new_job("admins"),
    ),
    "createJob(command)": Operation(
        f"mutation($input: CreateJobInput!) {{ createJob(input: $input) {{ {JOB_FIELDS} }} }}",
        job_input("qa", {"kind": "command", "command": "true"}),
        new_job("a"),
    ),
    "updateJob(member's)": Operation(JOB_OPS["updateJob"], priority_of("job_m")),
    "updateJob(operator's)": Operation(JOB_OPS["updateJob"], priority_of("job_o")),
    "deleteJob(member's)": Operation(JOB_OPS["deleteJob"], fresh_job_of("member")),
    "deleteJob(operator's)": Operation(JOB_OPS["deleteJob"], fresh_job_of("operator")),
    "addTasks(member's)": Operation(JOB_OPS["addTasks"], tasks_to_add("job_m"), new_tasks),
    "addTasks(operator's)": Operation(JOB_OPS["addTasks"], tasks_to_add("job_o"), new_tasks),
    "updateTasks(member's)": Operation(JOB_OPS["updateTasks"], task_update("job_m", "task_m")),
    "updateTasks(operator's)": Operation(JOB_OPS["updateTasks"], task_update("job_o", "task_o")),
    "claimTasks": Operation(
        'mutation { claimTasks(worker: "cell", queues: ["qwork"], limit: 1) { id } }',
        ok=lambda w, r, value: None,  # a list, maybe empty: the claim was allowed
    ),
    **{name: Operation(doc, fresh_lease) for name, doc in LEASE_OPS.items()},
    "createUser": Operation("mutation($name: String!) { createUser(name: $name) { name } }", a_name("user")),
    "disableUser": Operation(
        "mutation($name: String!) { disableUser(name: $name) }", lambda w, r: {"name": w.fresh_user()}
    ),
    "enableUser": Operation(
        "mutation($name: String!) { enableUser(name: $name) }", lambda w, r: {"name": w.fresh_user()}
    ),
    "createGroup": Operation(
        "mutation($code: String!) { createGroup(code: $code) { code } }", lambda w, r: {"code": w.unique("g")}
    ),
    "updateGroup": Operation('mutation { updateGroup(code: "a", description: "group a") { code } }'),
    "updateGroup(allowCommands)": Operation(
        'mutation { updateGroup(code: "a", allowCommands: true) { code } }', after=allow_no_commands
    ),
    "addMember": Operation(
        'mutation($user: String!) { addMember(group: "a", user: $user, role: "viewer") { code } }',
        lambda w, r: {"user": w.fresh_user()},
    ),
    "changeRole": Operation(
        'mutation($user: String!) { changeRole(group: "a", user: $user, role: "member") { code } }',
        lambda w, r: {"user": w.fresh_user("a")},
    ),
    "removeMember": Operation(
        'mutation($user: String!) { removeMember(group: "a", user: $user) { code } }',
        lambda w, r: {"user": w.fresh_user("a")},
    ),
    "createToken": Operation(
        'mutation { createToken(expiresIn: "1d", label: "cell") { token prefix user } }', ok=token_of(None)
    ),
    "createToken(anotherUser)": Operation(
        "mutation($user: String) { createToken(user: $user) { token prefix user } }",
        lambda w, r: {"user": BYSTANDER},
        token_of(BYSTANDER),
    ),
    "revokeToken": Operation(
        "mutation($prefix: String!) { revokeToken(token: $prefix) }",
        lambda w, r: {"prefix": w.fresh_token(r.user or BYSTANDER)},
    ),
    "revokeToken(another's)": Operation(
        "mutation($prefix: String!) { revokeToken(token: $prefix) }", lambda w, r: {"prefix": w.fresh_token(BYSTANDER)}
    ),
    "jobProgress": Operation(S_PROGRESS, with_id("job_m"), progress_of_m, listen=first_message("jobProgress")),
    "jobUpdated": Operation(
        S_UPDATED,
        ok=heard("id", of_job, True),
        empty=heard("id", of_job, False),
        listen=changes("jobUpdated", "id"),
    ),
    "events(subscription)": Operation(
        S_EVENTS,
        lambda w, r: {"after": head(w.server)},
        heard("aggregateId", of_event, True),
        heard("aggregateId", of_event, False),
        listen=changes("events", "aggregateId"),
    ),
}

# -- the server and its world, once per store ------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("access")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'jobledger.db'}"
    else:
        url = fresh_schema(request.getfixturevalue("postgres_database"), "access")
    server, admin_token = start_with_auth(url, tmp)
    ledger = minting_ledger(url)
    try:
        assert admin_token is not None, "an empty store's first start makes the first admin"
        with httpx.Client(timeout=30) as http:
            yield build_world(server, admin_token, http, ledger)
    finally:
        stop_server(server)
        ledger.close()


async def subscribe(
    world: World, op: Operation, role: Role, variables: dict[str, Any], token: str | None, address: str | None = None
) -> dict[str, Any]:
    async with TokenWS(world.server.ws, token, address) as ws:
        sub = await ws.subscribe(op.document, variables)
        listen = op.listen or first_message(op.field)
        return await listen(world, role, sub)


def ask(
    world: World,
    op: Operation,
    role: Role,
    token: str | None,
    address: str | None = None,
    variables: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The answer to one cell: the operation asked with `token` (from `address`), with
    `variables` (default: made for the cell)."""
    variables = op.variables(world, role) if variables is None else variables
    try:
        if op.kind == "subscription":
            return asyncio.run(subscribe(world, op, role, variables, token, address))
        return post(world.server, op.document, variables, token, address=address, client=world.http)
    finally:
        if op.after is not None:
            op.after(world)


# -- the table ---------------------------------------------------------------------------------


def test_the_table_covers_every_root_field_of_the_contract() -> None:
    contract = graphql.build_schema(CONTRACT.read_text())
    missing = root_fields(contract) - {(op.kind, op.field) for op in OPERATIONS.values()}
    assert not missing, f"operations of the contract without a row in TABLE: {sorted(missing)}"


def test_the_table_covers_every_root_field_the_server_serves() -> None:
    from api.schema import build_schema  # the schema the server serves: the contract and more

    served = graphql.build_schema(build_schema().as_str())
    missing = root_fields(served) - {(op.kind, op.field) for op in OPERATIONS.values()}
    assert not missing, f"operations of the schema without a row in TABLE: {sorted(missing)}"


def test_every_row_of_the_table_is_an_operation_and_back() -> None:
    assert set(EXPECTED) == set(OPERATIONS)


def root_fields(schema: graphql.GraphQLSchema) -> set[tuple[str, str]]:
    roots = {"query": schema.query_type, "mutation": schema.mutation_type, "subscription": schema.subscription_type}
    return {(kind, name) for kind, root in roots.items() if root is not None for name in root.fields}


CELLS = [pytest.param(label, role, id=f"{label}-{role}") for label in EXPECTED for role in ROLES]


@pytest.mark.parametrize(("label", "role"), CELLS)
def test_each_role_gets_the_answer_of_the_table(world: World, label: str, role: str) -> None:
    op, expected, who = OPERATIONS[label], EXPECTED[label][role], ROLES[role]
    answer = ask(world, op, who, world.tokens.get(role))
    if expected in (UNAUTH, FORBIDDEN, NOT_FOUND):
        assert code_of(answer) == expected, f"{role} on {label}: expected {expected}, the server answered {answer}"
        assert not (answer.get("data") or {}).get(op.field), answer
        return
    assert not answer.get("errors"), f"{role} on {label}: expected {expected}, the server answered {answer}"
    value = answer["data"][op.field]
    if expected == NULL:
        assert value is None, f"{role} on {label}: expected null, the server answered {value}"
    elif expected == OK:
        op.ok(world, who, value)
    else:
        op.empty(world, who, value)


# -- tokens that do not work -------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_tokens(world: World) -> dict[str, str]:
    """An unknown token; a token of the member that worked, then was revoked; one that expired."""
    revoked = world.mint("mia")
    assert data_of(post(world.server, "{ me { user } }", token=revoked))["me"]["user"] == "mia"
    world.data("site", REVOKE_TOKEN, {"t": revoked})
    return {"unknown": unknown_token(), "revoked": revoked, "expired": expired_token(world.ledger, "mia")}


@pytest.mark.parametrize("label", list(EXPECTED))
def test_a_token_that_does_not_work_is_unauthenticated_everywhere(
    world: World, bad_tokens: dict[str, str], label: str
) -> None:
    op = OPERATIONS[label]
    variables = op.variables(world, ROLES["none"])  # made once: a refused request uses nothing up
    answers = {
        # Each from an address of its own: the server slows down addresses that show bad tokens.
        kind: ask(world, op, ROLES["none"], token, fresh_address(), variables)
        for kind, token in bad_tokens.items()
    }
    wrong = {kind: answer for kind, answer in answers.items() if code_of(answer) != UNAUTH}
    assert not wrong, f"tokens that do not work on {label}; the server answered {wrong}"


def test_a_disabled_user_a_malformed_token_and_a_wrong_secret_are_unauthenticated(world: World) -> None:
    name = world.fresh_user("a", "member")
    token = world.mint(name)
    assert data_of(post(world.server, "{ me { user } }", token=token))["me"]["user"] == name
    world.data("site", "mutation($n: String!) { disableUser(name: $n) }", {"n": name})
    wrong_secret = f"jl_{token.split('_')[1]}_{'x' * 43}"
    for shown in (token, "not-a-token", wrong_secret):
        answer = post(world.server, "{ me { user } }", token=shown, address=fresh_address())
        assert code_of(answer) == UNAUTH, (shown[:24], answer)


# -- group a's member and group b ----------------------------------------------------------------

LOOKUPS = [
    ("query($id: ID) { queue(id: $id) { id } }", "qb"),
    ("query($id: ID!) { job(id: $id) { id } }", "job_b"),
    ("query($id: ID!) { task(id: $id) { id } }", "task_b"),
]


def test_a_member_of_a_reads_and_counts_nothing_of_group_b(world: World) -> None:
    for document, key in LOOKUPS:
        hidden = world.answer("member", document, {"id": world.ids[key]})
        missing_id = world.random_id()
        assert like_missing(hidden, world.ids[key], world.answer("member", document, {"id": missing_id}), missing_id)
        assert not hidden.get("errors") and next(iter(hidden["data"].values())) is None, hidden
    assert world.data("member", '{ queue(code: "qb") { id } }')["queue"] is None
    for key in ("qb", "job_b", "task_b"):
        assert world.data("member", OPERATIONS["events(aggregateId)"].document, {"id": world.ids[key]}) == {
            "events": {"nodes": []}
        }
    tasks = world.data("member", OPERATIONS["tasks"].document, {"id": world.ids["job_b"]})["tasks"]
    assert tasks == {"totalCount": 0, "nodes": []}

    member, site = ROLES["member"], ROLES["site"]
    for label, outside in (("queues", {"qb", "qbwork"}), ("jobs", {"job_b"})):
        mine = world.data("member", OPERATIONS[label].document)[label]
        every = world.data("site", OPERATIONS[label].document)[label]
        OPERATIONS[label].ok(world, member, mine)  # only group a's, and counted as shown
        assert not {world.ids[k] for k in outside} & {n["id"] for n in mine["nodes"]}
        assert every["totalCount"] >= mine["totalCount"] + len(outside), (every["totalCount"], mine["totalCount"])
        OPERATIONS[label].ok(world, site, every)

    in_b = "query($q: String) { jobs(queue: $q) { totalCount nodes { id } } }"
    hidden = world.answer("member", in_b, {"q": "qb"})
    assert like_missing(hidden, "qb", world.answer("member", in_b, {"q": "no-such-queue"}), "no-such-queue"), hidden
    assert hidden.get("errors") or hidden["data"]["jobs"] == {"totalCount": 0, "nodes": []}, hidden
    where = world.data("member", '{ jobs(where: "queue.code = qb", phase: null) { totalCount nodes { id } } }')
    assert where["jobs"] == {"totalCount": 0, "nodes": []}


EVENT_PAGES = """
query($after: Long) {
  events(after: $after, first: 100) { nodes { aggregateId aggregateType } pageInfo { hasNextPage endCursor } }
}
"""


def test_a_member_of_a_reads_no_page_of_events_of_group_b(world: World) -> None:
    after, pages = 0, 0
    while True:
        page = world.data("member", EVENT_PAGES, {"after": after})["events"]
        outside = [n for n in page["nodes"] if world.group_of(n["aggregateId"]) != "a"]
        assert not outside, f"a member of a was shown events of no group or another group: {outside[:5]}"
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = int(page["pageInfo"]["endCursor"])
    assert pages >= 1


# What a member of a tries on group b's objects; each answered exactly as for a missing one.
CHANGES_OF_B: list[tuple[str, str, Callable[[World, str], dict[str, Any]], str]] = [
    *((name, doc, lambda w, ref: {"id": ref}, "qb") for name, doc in QUEUE_OPS.items()),
    ("updateJob", JOB_OPS["updateJob"], lambda w, ref: {"id": ref, "p": 9}, "job_b"),
    ("deleteJob", JOB_OPS["deleteJob"], lambda w, ref: {"id": ref}, "job_b"),
    ("addTasks", JOB_OPS["addTasks"], lambda w, ref: {"id": ref, "tasks": [{"source": "/in/z"}]}, "job_b"),
    (
        "updateTasks",
        JOB_OPS["updateTasks"],
        lambda w, ref: {"id": ref, "tasks": [{"id": w.ids["task_b"], "priority": 9}]},
        "job_b",
    ),
]
SNAPSHOT_OF_B = """
query($qb: ID, $job: ID!, $task: ID!) {
  queue(id: $qb) { description state status tags totalJobs }
  job(id: $job) { status priority modifier }
  task(id: $task) { status priority }
}
"""


class Comparisons:
    """Answers to objects a caller cannot see, each beside the answer to a missing one;
    `problems` lists, in words, every pair that differs or has another code than wanted."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.problems: list[str] = []

    def compare(
        self,
        who: str,
        what: str,
        document: str,
        hidden: tuple[dict[str, Any], str],
        missing: tuple[dict[str, Any], str],
    ) -> dict[str, Any]:
        (hidden_variables, hidden_ref), (missing_variables, missing_ref) = hidden, missing
        hidden_answer = self.world.answer(who, document, hidden_variables)
        missing_answer = self.world.answer(who, document, missing_variables)
        if not like_missing(hidden_answer, hidden_ref, missing_answer, missing_ref):
            self.problems.append(f"{who}: {what}: hidden {hidden_answer}; missing {missing_answer}")
        return hidden_answer

    def refused(
        self,
        who: str,
        what: str,
        document: str,
        hidden: tuple[dict[str, Any], str],
        missing: tuple[dict[str, Any], str],
        *codes: str,
    ) -> None:
        answer = self.compare(who, what, document, hidden, missing)
        if code_of(answer) not in codes:
            self.problems.append(f"{who}: {what}: expected {' or '.join(codes)}, the server answered {answer}")


def test_a_member_of_a_changes_nothing_of_group_b(world: World) -> None:
    ids, seen = world.ids, Comparisons(world)
    before = world.data("site", SNAPSHOT_OF_B, {"qb": ids["qb"], "job": ids["job_b"], "task": ids["task_b"]})
    for name, document, variables, key in CHANGES_OF_B:
        missing_id = world.random_id()
        hidden, missing = (variables(world, ids[key]), ids[key]), (variables(world, missing_id), missing_id)
        seen.refused("member", f"{name} of group b's {key}", document, hidden, missing, NOT_FOUND)

    new_job = OPERATIONS["createJob"].document
    seen.refused(
        "member",
        "createJob in group b's queue",
        new_job,
        ({"input": {"queue": "qb", "tasks": [{"source": "/in/y"}]}}, "qb"),
        ({"input": {"queue": "no-such-queue", "tasks": [{"source": "/in/y"}]}}, "no-such-queue"),
        NOT_FOUND,
    )
    move = "mutation($id: ID!, $q: String) { updateJob(id: $id, input: {queue: $q}) { id } }"
    seen.refused(
        "member",
        "moving a job of a to group b's queue",
        move,
        ({"id": ids["job_m"], "q": "qb"}, "qb"),
        ({"id": ids["job_m"], "q": "no-such-queue"}, "no-such-queue"),
        NOT_FOUND,
    )

    # Leases of group b's tasks: the member is a worker nowhere, a's worker works for a alone.
    for who in ("member", "worker"):
        for name, document in LEASE_OPS.items():
            lease = world.fresh_lease("b")
            missing_lease = f"{world.random_id()}.{lease.split('.', 1)[1]}"
            seen.refused(
                who,
                f"{name} of a lease of group b",
                document,
                ({"l": lease}, lease),
                ({"l": missing_lease}, missing_lease),
                NOT_FOUND,
            )
    world.fresh_job("site", "qbwork")
    claim = 'mutation($q: [String!]) { claimTasks(worker: "w", queues: $q) { id task { id } } }'
    claimed = seen.compare(
        "worker",
        "claimTasks in group b's queue",
        claim,
        ({"q": ["qbwork"]}, "qbwork"),
        ({"q": ["no-such-queue"]}, "no-such-queue"),
    )
    assert claimed.get("errors") or claimed["data"]["claimTasks"] == [], f"a's worker claimed b's task: {claimed}"

    after = world.data("site", SNAPSHOT_OF_B, {"qb": ids["qb"], "job": ids["job_b"], "task": ids["task_b"]})
    assert after == before
    assert not seen.problems, "\n".join(seen.problems)


GROUP_CHANGES = [
    ("operator", 'mutation($g: String) { createQueue(input: {code: "never", group: $g}) { id } }', {}),
    ("admin", 'mutation($g: String!) { updateGroup(code: $g, description: "x") { code } }', {}),
    (
        "admin",
        'mutation($g: String!, $u: String!) { addMember(group: $g, user: $u, role: "viewer") { code } }',
        {"u": BYSTANDER},
    ),
    (
        "admin",
        'mutation($g: String!, $u: String!) { changeRole(group: $g, user: $u, role: "viewer") { code } }',
        {"u": "bob"},
    ),
    ("admin", "mutation($g: String!, $u: String!) { removeMember(group: $g, user: $u) { code } }", {"u": "bob"}),
]


def test_a_hidden_group_is_refused_as_a_missing_one(world: World) -> None:
    seen = Comparisons(world)
    for who, document, more in GROUP_CHANGES:
        what = document.split("{")[1].split("(")[0].strip()
        hidden, missing = ({"g": "b", **more}, "b"), ({"g": "no-such-group", **more}, "no-such-group")
        seen.refused(who, f"{what} of group b", document, hidden, missing, FORBIDDEN, NOT_FOUND)
    assert not seen.problems, "\n".join(seen.problems)
    assert [g["code"] for g in world.data("member", "{ groups { code } }")["groups"]] == ["a"]


async def test_a_member_of_a_hears_nothing_of_group_b(world: World) -> None:
    ids, start = world.ids, await asyncio.to_thread(head, world.server)
    async with world.ws("member") as ws:
        every_job = await ws.subscribe(S_UPDATED)
        jobs_of_b = await ws.subscribe('subscription { jobUpdated(queue: "qb") { id } }')
        every_event = await ws.subscribe(S_EVENTS, {"after": start})
        events_of_b = await ws.subscribe(
            "subscription($after: Long, $id: ID) { events(after: $after, aggregateId: $id) { aggregateId } }",
            {"after": start, "id": ids["job_b"]},
        )
        missing_id = world.random_id()
        hidden = await ws.subscribe(S_PROGRESS, {"id": ids["job_b"]})
        missing = await ws.subscribe(S_PROGRESS, {"id": missing_id})
        hidden_errors, missing_errors = errors_in(await hidden.message()), errors_in(await missing.message())
        assert hidden_errors and hidden_errors[0]["extensions"]["code"] == NOT_FOUND, hidden_errors
        assert like_missing(hidden_errors, ids["job_b"], missing_errors, missing_id), (hidden_errors, missing_errors)

        # Round after round, b's job changes, then a's: every message must be about a's.
        heard_of_a, seen = 0, []
        deadline = time.monotonic() + 3 * WAIT
        while heard_of_a < 2 and time.monotonic() < deadline:
            await asyncio.to_thread(world.bump, "job_b")
            await asyncio.to_thread(world.bump, "job_m")
            while (msg := await poll(every_job.inbox, 0.5)) is not None:
                seen.append(msg["payload"]["data"]["jobUpdated"])
                heard_of_a += seen[-1]["id"] == ids["job_m"]
        assert heard_of_a >= 2, f"jobUpdated never told the member of a's own job: {seen}"
        assert {m["queue"]["group"] for m in seen} == {"a"}, seen

        events: list[dict[str, Any]] = []
        while sum(e["aggregateId"] == ids["job_m"] for e in events) < 2:
            events.append((await every_event.next())["events"])
        assert {world.group_of(e["aggregateId"]) for e in events} == {"a"}, events
        for quiet in (jobs_of_b, events_of_b):
            assert await poll(quiet.inbox, 0.3) is None, f"a member of a heard of group b: {quiet.inbox}"
