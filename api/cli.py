"""The `jobledger` command. It only dispatches: each program adds its own sub-commands,
the server `serve`, `projections` and `events` (api/commands.py), the worker `worker`
(worker/cli.py), the client `queue`, `job` and `task` (jobledger_client/cli/)."""

from __future__ import annotations

import argparse
import importlib
import sys

from api.settings import Settings
from domain.errors import LedgerError

# Each module has `add_commands(subparsers)`. They are loaded by name, not imported: the
# worker is a program of its own that reaches the server only over HTTP, and the import
# contracts (.importlinter) keep the server's packages from depending on it; this entry
# point is where the programs meet, and only to hand each its command line.
PROGRAMS = (
    "api.commands",  # serve, projections, events: the service and its store
    "worker.cli",  # worker
    "jobledger_client.cli",  # queue, job, task: through the Python client against --url
)


def main(argv: list[str] | None = None) -> int:
    """Run the command `argv` names; returns its exit status (2 for an error the domain
    refused with, 130 when interrupted)."""
    args = build_parser().parse_args(argv)
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
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobledger", description="An event-sourced job queue.")
    parser.add_argument(
        "--database-url", help="store to use (default: $JOBLEDGER_DATABASE_URL or sqlite:///jobledger.db)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for program in PROGRAMS:
        importlib.import_module(program).add_commands(commands)
    return parser


if __name__ == "__main__":
    sys.exit(main())
