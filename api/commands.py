"""The server's sub-commands of `jobledger`: serve, projections, events and token.

This module builds their parsers only. A command's module (`api.serve`, or
`api.maintenance` and `api.tokens` for the operator's commands on the store) is loaded when the command
runs, so that `jobledger worker` and the client's commands do not pay for uvicorn, the
store or rich.
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Any, Literal

from api.settings import Settings
from domain.access import Role


@dataclass(frozen=True)
class Command:
    """A sub-command's `run`: the function `module:name`, imported when it runs. `store` says
    what it needs of the store at --database-url, looked at first (`persistence.presence`):
    "create" (it may make a new one: `serve`), "existing" (it reads or changes one that is
    there, and never creates one), or None."""

    target: str
    store: Literal["create", "existing"] | None = "existing"

    def __call__(self, settings: Settings, args: argparse.Namespace) -> int:
        if self.store is not None:
            from persistence.presence import check_store
            from persistence.urls import parse_database_url

            check_store(parse_database_url(settings.database_url), create=self.store == "create")
        module, name = self.target.split(":")
        result: int = getattr(importlib.import_module(module), name)(settings, args)
        return result


DATABASE_URL_HELP = (
    "the store: sqlite:///absolute/path.db, sqlite:relative/path.db or postgresql://user@host/db "
    "(default: $JOBLEDGER_DATABASE_URL or sqlite:jobledger.db)"
)


def _store_option(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """--database-url on a sub-command too (SUPPRESS: one given before the command stands)."""
    parser.add_argument("--database-url", default=argparse.SUPPRESS, metavar="URL", help=DATABASE_URL_HELP)
    return parser


def add_commands(commands: Any) -> None:
    """Add `serve`, `projections`, `events` and `token` to the `jobledger` command's subparsers."""
    serve = commands.add_parser("serve", help="run the service")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    _store_option(serve)
    serve.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="N",
        help="largest request body accepted, larger ones get HTTP 413 (default $JOBLEDGER_MAX_BODY_BYTES or 1 MiB)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="processes serving one port (default $JOBLEDGER_WORKERS, else the number of cores on PostgreSQL, "
        "1 on SQLite); one of them runs the projections and the clock",
    )
    serve.set_defaults(run=Command("api.serve:run_serve", store="create"))

    # The operator's commands on an existing store: none of them creates one.
    projections = _store_option(commands.add_parser("projections", help="inspect or rebuild the read models"))
    actions = projections.add_subparsers(dest="action", required=True, metavar="ACTION")
    _store_option(
        actions.add_parser(
            "status", help="position, lag, and what keeps the read models from being complete (exit 1 if anything)"
        )
    ).set_defaults(run=Command("api.maintenance:run_status"))
    _store_option(actions.add_parser("rebuild", help="drop the read models and replay every event")).set_defaults(
        run=Command("api.maintenance:run_rebuild")
    )
    _store_option(
        actions.add_parser("skipped", help="the events the read models set aside because they could not apply them")
    ).set_defaults(run=Command("api.maintenance:run_skipped"))
    acknowledge = _store_option(
        actions.add_parser("acknowledge", help="accept events set aside: the read models stop saying they are degraded")
    )
    acknowledge.add_argument("positions", nargs="*", type=int, metavar="POSITION", help="these (default: all)")
    acknowledge.set_defaults(run=Command("api.maintenance:run_acknowledge"))
    _store_option(
        actions.add_parser(
            "retry", help="after a fix: rebuild the read models, retrying the events set aside in their place"
        )
    ).set_defaults(run=Command("api.maintenance:run_retry"))

    events = _store_option(commands.add_parser("events", help="the event history"))
    event_actions = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _store_option(event_actions.add_parser("export", help="write the history as JSON lines"))
    export.add_argument("--after", type=int, default=0, metavar="POSITION", help="only events after this position")
    export.add_argument(
        "--aggregate",
        metavar="ID",
        help="only this aggregate's events: an id, a unique prefix of one (the short ids of the tables), "
        "or a job's or queue's code",
    )
    export.add_argument("--follow", action="store_true", help="keep writing new events as they happen")
    export.set_defaults(run=Command("api.maintenance:run_export"))

    token = commands.add_parser("token", help="mint and revoke access tokens, on the store itself")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_actions.add_parser(
        "create", help="print a new token for a user (made if missing), alone on stdout; it is shown only once"
    )
    create.add_argument("--user", required=True, metavar="NAME", help="whose token (created if missing)")
    create.add_argument("--group", metavar="GROUP", help="make the user a member of this group (created if missing)")
    create.add_argument("--role", metavar="ROLE", help=f"their role in --group: {', '.join(Role)}")
    create.add_argument("--expires", metavar="DURATION", help="lifetime such as 90m, 12h, 30d, 2w (default: none)")
    create.add_argument("--label", metavar="TEXT", help="what the token is for")
    _store_option(create)
    create.set_defaults(run=Command("api.tokens:run_create"))
    revoke = token_actions.add_parser("revoke", help="revoke a token: its next use fails")
    revoke.add_argument("token", metavar="PREFIX_OR_TOKEN", help="the token's prefix, the token itself, or its id")
    _store_option(revoke)
    revoke.set_defaults(run=Command("api.tokens:run_revoke"))
