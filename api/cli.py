"""The `jobledger` command. It only dispatches: each program adds its own sub-commands,
the server `serve`, `projections` and `events` (api/commands.py), the worker `worker`
(worker/cli.py), the client `queue`, `job` and `task` (jobledger_client/cli/)."""

from __future__ import annotations

import argparse
import importlib
import sys

from api.settings import Settings
from domain.errors import LedgerError
from persistence.presence import StoreUnusable
from persistence.urls import StorageError

# Each module has `add_commands(subparsers)`. They are loaded by name, not imported: the
# worker is a program of its own that reaches the server only over HTTP, and the import
# contracts (.importlinter) keep the server's packages from depending on it; this entry
# point is where the programs meet, and only to hand each its command line.
PROGRAMS = (
    "api.commands",  # serve, projections, events: the service and its store
    "worker.cli",  # worker
    "jobledger_client.cli",  # queue, job, task: through the Python client against --url
)


# The options of the programs that speak to the service (`queue`, `job`, `task`, and of
# these `worker` has --url, --token and --user), taken anywhere on the command line: given
# before the command they are handed to it (`jobledger --json job list`).
GLOBAL_OPTIONS = {"--url": True, "--token": True, "--user": True, "--retry-for": True, "--json": False}


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` names; returns its exit status (2 for an error the domain
    refused with or a store that cannot be used, 130 when interrupted)."""
    args = build_parser().parse_args(handed_on(sys.argv[1:] if argv is None else argv))
    # Read once, here, and handed to whichever command runs; the worker's and the client's
    # commands are configured by their own options and leave it unused.
    settings = Settings.from_env().with_overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        database_url=getattr(args, "database_url", None),
    )
    try:
        result: int = args.run(settings, args)
        return result
    except LedgerError as exc:
        print(f"jobledger: {exc.message}", file=sys.stderr)
        return 2
    except StoreUnusable as exc:  # it says which store and what to do
        print(f"jobledger: {exc.reason}", file=sys.stderr)
        return 2
    except StorageError as exc:  # a database URL that names no store
        print(f"jobledger: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def handed_on(argv: list[str]) -> list[str]:
    """`argv` with the GLOBAL_OPTIONS given before the command moved to just after the command
    word, where the command's own parser reads them (and a later one of its own wins); the
    rest as it was."""
    before: list[str] = []
    moved: list[str] = []
    index = 0
    while index < len(argv) and argv[index].startswith("-") and argv[index] != "--":
        arg = argv[index]
        name, has_value, _ = arg.partition("=")
        takes_value = GLOBAL_OPTIONS.get(name)
        step = 2 if (takes_value or name == "--database-url") and not has_value else 1
        (moved if takes_value is not None else before).extend(argv[index : index + step])
        index += step
    if not moved or index >= len(argv):
        return argv
    return [*before, argv[index], *moved, *argv[index + 1 :]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobledger",
        description="An event-sourced job queue.",
        epilog="--url, --token, --user, --json and --retry-for (of the queue, job, task and worker commands) "
        "and --database-url (of the commands on the store) may come before or after the command.",
    )
    parser.add_argument(
        "--database-url",
        metavar="URL",
        help="the store: sqlite:///absolute/path.db, sqlite:relative/path.db or postgresql://user@host/db "
        "(default: $JOBLEDGER_DATABASE_URL or sqlite:jobledger.db)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for program in PROGRAMS:
        importlib.import_module(program).add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
