"""Running one client command: a `Client` on --url/--token/--user that keeps trying for
--retry-for seconds while the service cannot be reached (saying so once on stderr), every
failure as `jobledger: <message>` with exit code 2, and the options lists share (--sort,
--limit)."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from jobledger_client import Client, Forbidden, JobledgerError, OutcomeUnknown, RetryPolicy, Unavailable
from jobledger_client.cli import output

MAX_PAGE = 500

Run = Callable[[Client, argparse.Namespace], int | None]


class UsageError(Exception):
    """A request the command line itself refuses (exit 2, like the server's errors)."""


class Declined(Exception):
    """The user answered no when asked to confirm (exit 1: nothing was done)."""


def confirm(args: argparse.Namespace, what: str) -> None:
    """Go on with a destructive action only if the user agrees to `what` (e.g. "terminate
    queue render: abort its 3 unfinished jobs"): --yes, or `y` at a prompt when stdin is a
    terminal. Without either, the action is refused (UsageError, exit 2) with the hint."""
    if getattr(args, "yes", False):
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{what}; add --yes to do it (no terminal to ask on)")
    output.stderr().print(f"{what}. Go on? [y/N] ", end="")
    reply = sys.stdin.readline().strip().lower()
    if reply not in ("y", "yes"):
        raise Declined("nothing done")


def run(target: str, args: argparse.Namespace) -> int:
    """Run the command `module:function` of this package with a client; its exit code."""
    module, _, name = target.partition(":")
    command: Run = getattr(importlib.import_module(f"jobledger_client.cli.{module}"), name)
    args.json = getattr(args, "json", False)
    retry = RetryPolicy(give_up_after=args.retry_for, log=retry_log())
    try:
        check_url(getattr(args, "url", None))
    except UsageError as exc:
        output.fail(str(exc))
        return 2
    try:
        client = Client(
            getattr(args, "url", None), getattr(args, "user", None), token=getattr(args, "token", None), retry=retry
        )
    except PermissionError as exc:  # a token file that is not ours to read
        output.fail(str(exc))
        return 2
    try:
        return command(client, args) or 0
    except Unavailable as exc:
        output.fail(unreachable(client, exc, args.retry_for))
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
    except Declined as exc:
        output.fail(str(exc))
        return 1
    except BrokenPipeError:  # the reader (e.g. `head`) has had enough
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    finally:
        client.close()


def check_url(given: str | None) -> None:
    """UsageError when --url (or $JOBLEDGER_URL) is no http(s) URL: a malformed URL is the
    caller's to fix, not a service that cannot be reached."""
    text = given or os.environ.get("JOBLEDGER_URL")
    if not text:
        return
    source = "--url" if given else "$JOBLEDGER_URL"
    parts = urlsplit(text)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # a port that is not a number, or out of range
        port_ok = False
    if parts.scheme in ("http", "https") and parts.hostname and port_ok:
        return
    guess = f"http://{text.split('://')[-1]}" if "." in text or ":" in text else "http://127.0.0.1:8000/graphql"
    raise UsageError(f"{source} {text!r} is not a URL of the service: write it like {guess}")


def retry_log() -> logging.Logger:
    """The logger the retry policy tells an outage to: `jobledger: server unreachable (...);
    retrying` on stderr, once, so that a wait is not a silent hang."""
    log = logging.getLogger("jobledger.cli")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("jobledger: %(message)s"))
        log.addHandler(handler)
        log.propagate = False
    return log


def unreachable(client: Client, exc: Unavailable, retried_for: float) -> str:
    """What to say when the service did not answer in GraphQL, after `retried_for` seconds of retries."""
    status = exc.details.get("status")
    if status:
        return f"the service at {client.url} answered HTTP {status}, not GraphQL: is --url right?"
    tried = f" (tried for {retried_for:g} s)" if retried_for and exc.retryable else ""
    if isinstance(exc, OutcomeUnknown) and exc.idempotency_key:
        return (
            f"no answer from the service at {client.url}{tried}, so whether it was done is unknown: look before"
            f" doing it again, or send it again with --idempotency-key {exc.idempotency_key} where the command has it"
        )
    if exc.errors:  # the service's own word: it cannot reach its database
        return f"{exc.message}{tried}"
    return f"cannot reach the service at {client.url}{tried}: is `jobledger serve` running?"


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
