"""Identity stories on eventsourcing's in-memory store: users, groups, roles and tokens,
and what a token proves."""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import pytest
from argon2 import PasswordHasher

from domain.access import RIGHTS, Principal, Right, Role
from domain.errors import ConflictError, NotFoundError, UnauthenticatedError, ValidationError
from domain.groups import Group
from domain.history import History
from domain.ledger import Ledger
from domain.tokens import SecretHasher, check_lifetime, parse_token
from domain.users import DIRECTORY_ID, Directory, User

# argon2 as the store uses it, with parameters small enough for a quick test.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger("memory://")
    ledger.identity.hasher = SecretHasher(FAST_HASHER)
    return ledger


def later(ledger: Ledger, delta: timedelta) -> None:
    """Move the identity service's clock forward."""
    start = ledger.identity.clock()
    ledger.identity.clock = lambda: start + delta


def unauthenticated(ledger: Ledger, token: object) -> UnauthenticatedError:
    with pytest.raises(UnauthenticatedError) as caught:
        ledger.identity.authenticate(token)
    assert caught.value.code == "UNAUTHENTICATED"
    return caught.value


def refused(error: type[Exception], call, *args, **kwargs):
    with pytest.raises(error) as caught:
        call(*args, **kwargs)
    return caught.value


def directory(ledger: Ledger) -> Directory:
    found = ledger.load(DIRECTORY_ID)
    assert isinstance(found, Directory)
    return found


def user(ledger: Ledger, name: str) -> User:
    found = ledger.load(UUID(directory(ledger).users[name]))
    assert isinstance(found, User)
    return found


def group(ledger: Ledger, code: str) -> Group:
    found = ledger.load(UUID(directory(ledger).groups[code]))
    assert isinstance(found, Group)
    return found


def stored_states(ledger: Ledger) -> list[bytes]:
    head = ledger.position()
    return [n.state for n in ledger.recorder.select_notifications(start=1, limit=head)]


# -- minting and authenticating ---------------------------------------------------------


def test_an_operator_mints_a_token_and_it_proves_who_holds_it(ledger):
    issued = ledger.identity.ensure_token("alice@corp", "render", "member", actor="operator")

    assert issued.token.startswith(f"jl_{issued.prefix}_")
    principal = ledger.identity.authenticate(issued.token)
    assert principal.user == "alice@corp"
    assert principal.site_admin is False
    assert dict(principal.groups) == {"render": Role.MEMBER}
    assert principal.token_id == issued.id
    assert principal.may(Right.SUBMIT, "render") and not principal.may(Right.MANAGE_QUEUES, "render")
    assert not principal.may(Right.READ, "elsewhere")


def test_ensuring_a_token_creates_the_user_the_group_and_the_membership_in_one_command(ledger):
    before = ledger.position()
    issued = ledger.identity.ensure_token("render-node-7", "farm", "worker", expires="30d", label="rack 3")

    records = History(ledger).read(before)
    assert [r.type for r in records] == [
        "Directory.Created",
        "User.Created",
        "Directory.UserRegistered",
        "Group.Created",
        "Directory.GroupRegistered",
        "Group.MemberAdded",
        "User.MembershipChanged",
        "Token.Issued",
    ]
    assert issued.written.position == records[-1].position == ledger.position()
    assert group(ledger, "farm").members == {"render-node-7": "worker"}
    assert user(ledger, "render-node-7").groups == {"farm": "worker"}


def test_ensuring_again_reuses_the_user_and_group_and_sets_the_role_asked_for(ledger):
    first = ledger.identity.ensure_token("bob", "render", "viewer")
    second = ledger.identity.ensure_token("bob", "render", "operator")
    third = ledger.identity.ensure_token("bob")  # no group: memberships stay as they are

    assert len({first.prefix, second.prefix, third.prefix}) == 3
    assert list(directory(ledger).users) == ["bob"] and list(directory(ledger).groups) == ["render"]
    for issued in (first, second, third):
        assert dict(ledger.identity.authenticate(issued.token).groups) == {"render": Role.OPERATOR}


def test_a_token_is_shown_once_and_its_secret_never_reaches_the_store(ledger):
    issued = ledger.identity.ensure_token("carol", "render", "admin", label="laptop")
    ledger.identity.revoke_token(issued.prefix)
    secret = parse_token(issued.token).secret

    states = stored_states(ledger)
    assert states and not any(secret.encode() in state for state in states)
    assert not any(issued.token.encode() in state for state in states)
    assert any(b"$argon2id$" in state for state in states)  # the hash is what is kept
    assert secret not in repr(issued) and secret not in repr(parse_token(issued.token))


def test_the_default_hasher_is_argon2id():
    secret_hash = SecretHasher().hash("s3cret")
    assert secret_hash.startswith("$argon2id$")
    assert SecretHasher().verify(secret_hash, "s3cret") and not SecretHasher().verify(secret_hash, "s3cre7")


def test_a_revoked_token_no_longer_authenticates_even_after_it_did(ledger):
    issued = ledger.identity.ensure_token("dave")
    ledger.identity.authenticate(issued.token)  # verified once: remembered in this process

    revoked = ledger.identity.revoke_token(issued.token, actor="operator")
    assert revoked.id == issued.id
    assert unauthenticated(ledger, issued.token).reason == "revoked"
    # Revoking again changes nothing.
    assert ledger.identity.revoke_token(f"jl_{issued.prefix}").position == revoked.position


def test_a_token_can_be_revoked_by_its_id(ledger):
    issued = ledger.identity.ensure_token("erin")
    ledger.identity.revoke_token(issued.id)
    assert unauthenticated(ledger, issued.token).reason == "revoked"


def test_an_expired_token_does_not_authenticate(ledger):
    issued = ledger.identity.issue_token(ledger_user(ledger, "frank"), expires_in=timedelta(hours=1))
    ledger.identity.authenticate(issued.token)

    later(ledger, timedelta(minutes=59))
    ledger.identity.authenticate(issued.token)
    later(ledger, timedelta(hours=1, seconds=1))
    error = unauthenticated(ledger, issued.token)
    assert error.reason == "expired" and issued.prefix in error.message


def ledger_user(ledger: Ledger, name: str) -> str:
    ledger.identity.create_user(name)
    return name


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        None,
        42,
        "Bearer",
        "jl_",
        "jl_0123456789ab",
        "jl_0123456789ab_",
        "xx_0123456789ab_" + "a" * 43,
        "jl_0123456789AB_" + "a" * 43,
        "jl_0123456789ab_" + "a" * 42,
        "jl_0123456789ab_" + "a" * 42 + "!",
        "jl_0123456789ab_" + "a" * 10_000,
        "jl_0123456789ab_" + "\x00" * 43,
    ],
)
def test_garbage_is_not_a_token(ledger, garbage):
    assert unauthenticated(ledger, garbage).reason in {"missing", "malformed"}


def test_an_unknown_prefix_and_a_wrong_secret_both_read_unknown_token(ledger):
    issued = ledger.identity.ensure_token("gina")
    ledger.identity.authenticate(issued.token)
    prefix, secret = issued.prefix, parse_token(issued.token).secret
    wrong_secret = f"jl_{prefix}_{'b' * 43 if secret != 'b' * 43 else 'c' * 43}"
    unknown_prefix = f"jl_{'0' * 12 if prefix != '0' * 12 else '1' * 12}_{secret}"

    for token in (wrong_secret, unknown_prefix):
        error = unauthenticated(ledger, token)
        assert (error.reason, error.message) == ("unknown", "unknown token")
    # A revoked token with a wrong secret tells nothing of the revocation.
    ledger.identity.revoke_token(prefix)
    assert unauthenticated(ledger, wrong_secret).reason == "unknown"


def test_a_disabled_users_tokens_stop_working_until_they_are_enabled(ledger):
    issued = ledger.identity.ensure_token("hank")
    ledger.identity.disable_user("hank")
    assert unauthenticated(ledger, issued.token).reason == "disabled"
    refused(ConflictError, ledger.identity.issue_token, "hank")
    refused(ConflictError, ledger.identity.ensure_token, "hank")

    ledger.identity.enable_user("hank")
    assert ledger.identity.authenticate(issued.token).user == "hank"


def test_a_site_admin_may_do_anything_anywhere(ledger):
    issued = ledger.identity.ensure_token("root", site_admin=True)
    principal = ledger.identity.authenticate(issued.token)
    assert principal.site_admin and principal.may(Right.MANAGE_GROUP, "any-group")

    ledger.identity.set_site_admin("root", False)
    assert not ledger.identity.authenticate(issued.token).may(Right.READ, "any-group")


# -- groups and roles --------------------------------------------------------------------


def test_members_are_added_given_other_roles_and_removed(ledger):
    ledger.identity.create_group("compositing", description="Comp team")
    ledger.identity.create_user("ivy")
    token = ledger.identity.issue_token("ivy", label="cli").token

    ledger.identity.add_member("compositing", "ivy", "VIEWER", actor="lead")
    assert dict(ledger.identity.authenticate(token).groups) == {"compositing": Role.VIEWER}
    ledger.identity.change_role("compositing", "ivy", Role.OPERATOR, actor="lead")
    assert dict(ledger.identity.authenticate(token).groups) == {"compositing": Role.OPERATOR}
    ledger.identity.remove_member("compositing", "ivy", actor="lead")
    assert dict(ledger.identity.authenticate(token).groups) == {}

    types = [r.type for r in History(ledger).of_aggregate(directory(ledger).groups["compositing"])]
    assert types == ["Group.Created", "Group.MemberAdded", "Group.MemberRoleChanged", "Group.MemberRemoved"]


def test_every_identity_event_carries_its_actor(ledger):
    ledger.identity.ensure_token("jack", "render", "member", actor="operator@host")
    ledger.identity.change_role("render", "jack", "viewer", actor="lead")
    records = History(ledger).read(ledger.position() - 8)
    assert {r.actor for r in records[:-2]} == {"operator@host"}
    assert {r.actor for r in records[-2:]} == {"lead"}


def test_adding_a_member_twice_is_a_conflict_and_a_stranger_is_not_found(ledger):
    ledger.identity.ensure_token("kim", "render", "member")
    assert "change their role" in refused(ConflictError, ledger.identity.add_member, "render", "kim", "admin").message
    assert refused(NotFoundError, ledger.identity.add_member, "render", "nobody", "viewer").kind == "User"
    assert refused(NotFoundError, ledger.identity.add_member, "nowhere", "kim", "viewer").kind == "Group"
    ledger.identity.create_user("lee")
    assert refused(NotFoundError, ledger.identity.change_role, "render", "lee", "viewer").kind == "Member"
    assert refused(NotFoundError, ledger.identity.remove_member, "render", "lee").kind == "Member"


def test_user_names_and_group_codes_are_unique(ledger):
    ledger.identity.create_user("mia")
    ledger.identity.create_group("lighting")
    assert "already exists" in refused(ConflictError, ledger.identity.create_user, "mia").message
    assert "already exists" in refused(ConflictError, ledger.identity.create_group, "lighting").message


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda ledger: ledger.identity.create_user("Alice"), "name"),
        (lambda ledger: ledger.identity.create_user(""), "name"),
        (lambda ledger: ledger.identity.create_user("a b"), "name"),
        (lambda ledger: ledger.identity.create_user("a" * 101), "name"),
        (lambda ledger: ledger.identity.create_user("nul\x00"), "name"),
        (lambda ledger: ledger.identity.create_user(7), "name"),
        (lambda ledger: ledger.identity.create_user("ok", site_admin="yes"), "siteAdmin"),
        (lambda ledger: ledger.identity.create_group("Render Farm"), "code"),
        (lambda ledger: ledger.identity.create_group("g" * 101), "code"),
        (lambda ledger: ledger.identity.create_group("ok", description=None), "description"),
        (lambda ledger: ledger.identity.ensure_token("nora", "render", "superuser"), "role"),
        (lambda ledger: ledger.identity.ensure_token("nora", "render"), "role"),
        (lambda ledger: ledger.identity.ensure_token("nora", role="viewer"), "group"),
        (lambda ledger: ledger.identity.ensure_token("nora", expires="forever"), "expiresIn"),
        (lambda ledger: ledger.identity.ensure_token("nora", expires=10), "expiresIn"),
        (lambda ledger: ledger.identity.ensure_token("nora", expires="9999w"), "expiresIn"),
        (lambda ledger: ledger.identity.ensure_token("nora", label="x" * 201), "label"),
        (lambda ledger: ledger.identity.revoke_token("not a token"), "token"),
        (lambda ledger: ledger.identity.revoke_token(""), "token"),
    ],
)
def test_invalid_identity_input_is_refused_naming_its_field_and_writes_nothing(ledger, call, field):
    before = ledger.position()
    error = refused(ValidationError, call, ledger)
    assert error.code == "VALIDATION" and error.field == field
    assert ledger.position() == before


def test_a_failed_ensure_token_writes_nothing(ledger):
    ledger.identity.create_user("olga")
    ledger.identity.disable_user("olga")
    before = ledger.position()
    refused(ConflictError, ledger.identity.ensure_token, "olga", "new-group", "admin")
    assert ledger.position() == before
    assert "new-group" not in directory(ledger).groups


def test_revoking_an_unknown_token_names_its_prefix_never_its_secret(ledger):
    secret = "s" * 43
    error = refused(NotFoundError, ledger.identity.revoke_token, f"jl_0123456789ab_{secret}")
    assert error.key == "0123456789ab" and secret not in error.message
    refused(NotFoundError, ledger.identity.revoke_token, "00000000-0000-0000-0000-000000000000")


# -- roles as data ------------------------------------------------------------------------


def test_the_roles_give_their_rights():
    assert RIGHTS[Role.VIEWER] == {Right.READ}
    assert RIGHTS[Role.WORKER] == {Right.WORK}
    assert RIGHTS[Role.VIEWER] < RIGHTS[Role.MEMBER] < RIGHTS[Role.OPERATOR] < RIGHTS[Role.ADMIN]
    assert Right.WORK not in RIGHTS[Role.ADMIN]
    assert set(RIGHTS) == set(Role)


def test_a_principal_holds_its_rights_only_in_its_own_groups():
    principal = Principal(user="pat", user_id="1", groups={"a": Role.WORKER, "b": Role.ADMIN})
    assert principal.may(Right.WORK, "a") and not principal.may(Right.READ, "a")
    assert principal.may(Right.MANAGE_GROUP, "b") and not principal.may(Right.WORK, "b")
    assert principal.role_in("c") is None and not principal.may(Right.READ, "c")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("12h", 43200), ("30d", 2_592_000), (" 2w ", 1_209_600), (3600, 3600)]
)
def test_a_lifetime_is_given_in_seconds_or_as_text(text, seconds):
    assert check_lifetime("expires", text) == timedelta(seconds=seconds)
    assert check_lifetime("expires", None) is None


def test_the_history_shows_a_tokens_issue_but_never_its_hash(ledger):
    before = ledger.position()
    issued = ledger.identity.ensure_token("auditor", expires="1d")
    issue = next(r for r in History(ledger).read(before) if r.type == "Token.Issued")
    assert issue.data["prefix"] == issued.prefix
    assert "secret_hash" not in issue.data
    assert not any("argon2" in str(value) for value in issue.data.values())
