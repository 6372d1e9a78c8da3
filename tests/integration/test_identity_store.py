"""Identity on both stores: an operator's token command is one atomic save, a token works
after the ledger is reopened and on every instance, revocation takes effect at the next
check everywhere, and the read models pass over identity events without keeping them."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from argon2 import PasswordHasher

from domain.access import Role
from domain.errors import ConflictError, UnauthenticatedError
from domain.history import History
from domain.ledger import Ledger
from domain.tokens import SecretHasher, parse_token
from projections.runner import ProjectionRunner
from projections.schema import FAILURES, JOBS, QUEUES, TASKS, TRACKING
from projections.stores import open_read_store

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def open_ledger(new_ledger: Callable[[], Ledger]) -> Callable[[], Ledger]:
    """Ledgers on the test's store (each like another service instance), with a quick argon2."""

    def opened() -> Ledger:
        ledger = new_ledger()
        ledger.identity.hasher = SecretHasher(FAST_HASHER)
        return ledger

    return opened


def test_ensure_token_writes_user_group_membership_and_token_in_one_save(open_ledger):
    ledger = open_ledger()
    before = ledger.position()

    issued = ledger.identity.ensure_token("alice@corp", "render", "member", expires="30d", actor="operator")

    records = History(ledger).read(before)
    assert [r.position for r in records] == list(range(before + 1, issued.written.position + 1))
    assert {r.type.split(".")[0] for r in records} == {"Directory", "User", "Group", "Token"}
    assert {r.actor for r in records} == {"operator"}


def test_a_token_authenticates_after_the_ledger_is_reopened(open_ledger):
    first = open_ledger()
    issued = first.identity.ensure_token("bob", "farm", "worker", label="node 1")
    first.close()

    again = open_ledger()
    principal = again.identity.authenticate(issued.token)
    assert (principal.user, dict(principal.groups)) == ("bob", {"farm": Role.WORKER})


def test_a_revocation_on_one_instance_is_seen_by_the_next_check_on_another(open_ledger):
    one, other = open_ledger(), open_ledger()
    issued = one.identity.ensure_token("carol", "render", "viewer")
    assert other.identity.authenticate(issued.token).user == "carol"  # cached there from now on

    one.identity.revoke_token(issued.prefix, actor="operator")

    with pytest.raises(UnauthenticatedError) as caught:
        other.identity.authenticate(issued.token)
    assert caught.value.reason == "revoked"


def test_a_role_changed_on_one_instance_is_seen_by_the_next_check_on_another(open_ledger):
    one, other = open_ledger(), open_ledger()
    issued = one.identity.ensure_token("dave", "render", "viewer")
    assert dict(other.identity.authenticate(issued.token).groups) == {"render": Role.VIEWER}
    one.identity.change_role("render", "dave", "operator")
    assert dict(other.identity.authenticate(issued.token).groups) == {"render": Role.OPERATOR}


def test_two_instances_ensuring_tokens_for_one_new_user_make_one_user(open_ledger):
    instances = [open_ledger(), open_ledger()]
    tokens: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(instances) * 2)

    def mint(ledger: Ledger, role: str) -> None:
        start.wait()
        try:
            tokens.append(ledger.identity.ensure_token("erin", "lighting", role).token)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=mint, args=(ledger, role)) for ledger in instances for role in ("viewer", "member")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [] and len(tokens) == 4
    principals = [instances[0].identity.authenticate(token) for token in tokens]
    assert {p.user_id for p in principals} == {principals[0].user_id}
    assert set(dict(principals[0].groups).values()) <= {Role.VIEWER, Role.MEMBER}


def test_a_failed_ensure_token_writes_nothing(open_ledger):
    ledger = open_ledger()
    ledger.identity.create_user("frank")
    ledger.identity.disable_user("frank")
    before = ledger.position()
    with pytest.raises(ConflictError):
        ledger.identity.ensure_token("frank", "new-group", "admin")
    assert ledger.position() == before


def test_the_projection_runner_passes_identity_events_without_keeping_them(open_ledger):
    ledger = open_ledger()
    ledger.jobs.create(tasks=["/a"], destination="/o", actor="lars")
    issued = ledger.identity.ensure_token("gina", "render", "admin")
    ledger.identity.revoke_token(issued.prefix)
    ledger.jobs.create(tasks=["/b"], destination="/o", actor="lars")

    store = open_read_store(ledger.store)
    try:
        runner = ProjectionRunner(ledger, store)
        runner.setup()
        runner.catch_up()
        assert runner.position() == ledger.position()
        status = runner.status()
        assert (status.lag, status.failing, status.set_aside) == (0, None, 0)
        assert runner.failures() == []
        secret = parse_token(issued.token).secret
        for table in (QUEUES, JOBS, TASKS, FAILURES, TRACKING):
            text = repr(store.read(f"SELECT * FROM {table}"))
            assert issued.prefix not in text and secret not in text and "argon2" not in text
    finally:
        store.close()
