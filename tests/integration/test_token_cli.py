"""`jobledger token create` and `jobledger token revoke` through the real entry point, on
the store itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from domain.access import Role
from domain.errors import UnauthenticatedError

TOKEN = re.compile(r"^jl_[0-9a-f]{12}_[A-Za-z0-9]{43}$")


def jobledger(store_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBLEDGER_DATABASE_URL": store_url}
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_token_create_prints_the_token_alone_and_it_authenticates(ledger, store_url):
    done = jobledger(store_url, "token", "create", "--user", "alice@corp", "--group", "render", "--role", "member")

    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert done.stdout == token + "\n" and TOKEN.match(token)
    principal = ledger.identity.authenticate(token)
    assert (principal.user, dict(principal.groups)) == ("alice@corp", {"render": Role.MEMBER})
    assert "alice@corp" in done.stderr and token not in done.stderr


def test_a_revoked_token_no_longer_authenticates(ledger, store_url):
    token = jobledger(store_url, "token", "create", "--user", "bob", "--expires", "30d").stdout.strip()
    ledger.identity.authenticate(token)
    prefix = token.split("_")[1]

    done = jobledger(store_url, "token", "revoke", prefix)

    assert done.returncode == 0, done.stderr
    assert prefix in done.stdout
    with pytest.raises(UnauthenticatedError) as caught:
        ledger.identity.authenticate(token)
    assert caught.value.reason == "revoked"
    assert jobledger(store_url, "token", "revoke", token).returncode == 0  # the whole token names it too


def test_token_create_takes_the_database_url_as_an_option(ledger, store_url):
    done = jobledger("sqlite:///nowhere/at/all.db", "token", "create", "--user", "carol", "--database-url", store_url)
    assert done.returncode == 0, done.stderr
    assert ledger.identity.authenticate(done.stdout.strip()).user == "carol"


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--user", "dave", "--group", "render", "--role", "boss"], "role: 'boss' is not one of viewer"),
        (["--user", "dave", "--group", "render"], "role: is required with a group"),
        (["--user", "Dave"], "user: 'Dave' may contain only lowercase"),
        (["--user", "dave", "--expires", "soon"], "expiresIn: 'soon' is not a duration"),
    ],
)
def test_token_create_refuses_bad_input_and_writes_nothing(ledger, store_url, args, said):
    before = ledger.position()
    done = jobledger(store_url, "token", "create", *args)
    assert done.returncode == 2
    assert said in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""
    assert ledger.position() == before


def test_revoking_an_unknown_token_is_a_readable_error(ledger, store_url):
    done = jobledger(store_url, "token", "revoke", "0123456789ab")
    assert done.returncode == 2
    assert "Token 0123456789ab does not exist" in done.stderr
