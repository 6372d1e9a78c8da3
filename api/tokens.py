"""`jobledger token create` and `jobledger token revoke`: the operator mints and revokes
tokens on the store itself, no service needed.

`create` prints the token alone on stdout (so that `TOKEN=$(jobledger token create ...)`
works) and what it made of it on stderr; the token is never shown again.
"""

from __future__ import annotations

import argparse
import getpass
import socket
import sys
from uuid import UUID

from api.settings import Settings
from domain.ledger import Ledger
from domain.limits import MAX_NAME


def operator() -> str:
    """The actor of the operator's commands: the login and machine they ran on."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        login = "unknown"
    return f"cli:{login}@{socket.gethostname()}"[:MAX_NAME]


def run_create(settings: Settings, args: argparse.Namespace) -> int:
    ledger = Ledger(settings.database_url)
    try:
        issued = ledger.identity.ensure_token(
            args.user, args.group, args.role, expires=args.expires, label=args.label, actor=operator()
        )
    finally:
        ledger.close()
    role = f", {args.role.lower()} of group {args.group}" if args.group else ""
    until = f", expires in {args.expires}" if args.expires else ", does not expire"
    print(f"token {issued.prefix} for {args.user}{role}{until}", file=sys.stderr)
    print(issued.token, flush=True)
    return 0


def run_revoke(settings: Settings, args: argparse.Namespace) -> int:
    ledger = Ledger(settings.database_url)
    try:
        written = ledger.identity.revoke_token(args.token, actor=operator())
        prefix = ledger.load(UUID(written.id)).prefix
    finally:
        ledger.close()
    print(f"revoked token {prefix}")
    return 0
