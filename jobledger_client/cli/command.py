"""Running one client command: a `Client` on --url/--token/--user, every failure as
`jobledger: <message>` with exit code 2, and the options lists share (--sort, --limit)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from jobledger_client import Client, Forbidden, JobledgerError, Unavailable
from jobledger_client.cli import output

MAX_PAGE = 500

Run = Callable[[Client, argparse.Namespace], int | None]


class UsageError(Exception):
    """A request the command line itself refuses (exit 2, like the server's errors)."""


def run(target: str, args: argparse.Namespace) -> int:
    """Run the command `module:function` of this package with a client; its exit code."""
    module, _, name = target.partition(":")
    command: Run = getattr(importlib.import_module(f"jobledger_client.cli.{module}"), name)
    args.json = getattr(args, "json", False)
    try:
        client = Client(getattr(args, "url", None), getattr(args, "user", None), token=getattr(args, "token", None))
    except PermissionError as exc:  # a token file that is not ours to read
        output.fail(str(exc))
        return 2
    try:
        return command(client, args) or 0
    except Unavailable as exc:
        output.fail(unreachable(client, exc))
        return 2
    except Forbidden as exc:
        output.fail(forbidden(client, exc))
        return 2
    except JobledgerError as exc:
        output.fail(exc.message)
        return 2
    except UsageError as exc:
        output.fail(str(exc))
        return 2
    except BrokenPipeError:  # the reader (e.g. `head`) has had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        client.close()


def unreachable(client: Client, exc: Unavailable) -> str:
    """What to say when the service did not answer in GraphQL."""
    status = exc.details.get("status")
    if status:
        return f"the service at {client.url} answered HTTP {status}, not GraphQL: is --url right?"
    return f"cannot reach the service at {client.url}: is `jobledger serve` running?"


def forbidden(client: Client, exc: Forbidden) -> str:
    """The server's refusal, and whose token it refused, so that one can ask for the right."""
    who = f"token {client.token_prefix}" if client.token_prefix else "no token"
    return f"{exc.message} (refused to {who}: ask an admin for a role that allows it, or use another --token)"


def sorting(args: argparse.Namespace) -> list[str]:
    """The --sort fields, repeated or comma-separated; the list's default when none."""
    if not args.sort:
        return [args.default_sort]
    return [part.strip() for item in args.sort for part in item.split(",") if part.strip()]


def page(limit: int) -> int:
    """A page that holds the limit and one more (to tell whether there is more), in one request."""
    return min(limit + 1, MAX_PAGE) if limit > 0 else MAX_PAGE


def limited(items: Iterator[Any], limit: int, what: str) -> list[Any]:
    """At most `limit` items (0: all); says on stderr when there were more."""
    if limit < 0:
        raise UsageError("--limit is 0 (all) or more")
    shown: list[Any] = []
    for item in items:
        if limit and len(shown) >= limit:
            total = getattr(items, "total_count", None)
            more = f"{total:,}" if total is not None else "more than that"
            output.note(f"({limit} of {more} {what} shown; --limit N for more, 0 for all)")
            break
        shown.append(item)
    return shown
