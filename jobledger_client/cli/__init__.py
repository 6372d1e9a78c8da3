"""`jobledger queue|job|task ...`: the service's queues, jobs and tasks from the command line.

Every command talks to a running service through `jobledger_client` (so it works
against any `jobledger serve`, near or far): `--url` (default $JOBLEDGER_URL or
http://127.0.0.1:8000/graphql), `--token` (default $JOBLEDGER_TOKEN, else the token
file, see `jobledger_client.credentials`), `--user` (default $JOBLEDGER_USER, read only
by a server run with JOBLEDGER_AUTH=off), `--json` and `--retry-for` are accepted by every subcommand,
before or after its action (`jobledger job --token T list`, `jobledger job list --token T`), and
before the command too (`jobledger --json job list`: `api.cli` hands them on).
A request that fails for a passing reason (the service cannot be reached, or cannot reach
its database) is sent again for up to `--retry-for` seconds (default 30), a change always
with the same Idempotency-Key, so that it is never done twice.

People get rich tables (short ids, sizes, relative times; colour on a terminal, plain
lines in a pipe); `--json` gives scripts the full records: a JSON array of objects for
a list, an object for one thing, one object per line for `job watch`. Failures print
`jobledger: <message>` on stderr (the server's words) and exit with 2; a refusal for want
of a valid token says where a token comes from, one for want of a right says which token
was used.

Jobs are named by their id, by a unique prefix of it (the short ids the tables
show), or by their code when it is unique; queues by code or id; tasks (in
`task exclude`) by uri ("0", "1", ...), id or id prefix.

Commands that destroy (queue terminate and delete, job delete, job abort of several, job
rerun of a done job) ask on a terminal and need --yes without one (`command.confirm`).

This module builds the parsers only; a command's module (`queues`, `jobs`, `watch`,
`tasks`), the client and rich are loaded when it runs, so that the `jobledger` program's
other commands do not pay for them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from jobledger_client.models import QueueSettings

DEFAULT_LIMIT = 100  # rows a list shows unless --limit says otherwise
DEFAULT_RETRY_FOR = 30.0  # seconds a command keeps trying while the service cannot be reached
SORT_VALUE = re.compile(r"^-[A-Za-z_][\w.,+-]*$")  # `-created`: a field, descending


@dataclass(frozen=True)
class Command:
    """A subcommand's `run`: the function `module:name` of this package, run with a client."""

    target: str

    def __call__(self, settings: Any, args: argparse.Namespace) -> int:
        from jobledger_client.cli.command import run

        args.retry_for = getattr(args, "retry_for", DEFAULT_RETRY_FOR)
        return run(self.target, args)


class ClientParser(argparse.ArgumentParser):
    """Reads `--sort -created` as `--sort=-created`: the word after --sort is its value even
    when it starts with a dash (argparse would take it for an unknown option)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        return super().parse_known_args(None if args is None else _attach_sort_values(args), namespace)


def _attach_sort_values(args: Sequence[str]) -> list[str]:
    """The arguments with each `--sort -FIELD` pair written as one `--sort=-FIELD`."""
    attached: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            attached += args[index:]
            break
        following = args[index + 1] if index + 1 < len(args) else ""
        if arg == "--sort" and following != "-h" and SORT_VALUE.match(following):
            attached.append(f"--sort={following}")
            index += 2
        else:
            attached.append(arg)
            index += 1
    return attached


def add_commands(commands: Any) -> None:
    """Add `queue`, `job` and `task` to the `jobledger` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    options = common.add_argument_group("service options")
    # SUPPRESS: given at either level (`jobledger job --json list` or `jobledger job list --json`),
    # the deeper parser's default does not overwrite it.
    options.add_argument(
        "--url",
        default=argparse.SUPPRESS,
        help="the service's /graphql URL (default: $JOBLEDGER_URL or http://127.0.0.1:8000/graphql)",
    )
    options.add_argument(
        "--token",
        default=argparse.SUPPRESS,
        help="your access token (default: $JOBLEDGER_TOKEN, else the token file: $JOBLEDGER_TOKEN_FILE, "
        "$XDG_CONFIG_HOME/jobledger/token or ~/.config/jobledger/token)",
    )
    options.add_argument(
        "--user",
        default=argparse.SUPPRESS,
        help="who you are, to a server run with JOBLEDGER_AUTH=off (default: $JOBLEDGER_USER)",
    )
    options.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON instead of tables"
    )
    options.add_argument(
        "--retry-for",
        type=_seconds,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"how long to keep trying while the service cannot be reached (default {DEFAULT_RETRY_FOR:g}; 0: once)",
    )
    parents = [common]

    def leaf(group: Any, name: str, target: str, help: str) -> Any:
        parser = group.add_parser(name, parents=parents, help=help, description=help[:1].upper() + help[1:] + ".")
        parser.set_defaults(run=Command(target))
        return parser

    # queue ...
    queue = commands.add_parser("queue", parents=parents, help="list, show and change queues")
    queues = queue.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=ClientParser)

    p = leaf(queues, "list", "queues:queue_list", "the queues, as a table")
    p.add_argument("--where", metavar="W", help='a filter, e.g. "priority>=500 AND status=waiting"')
    p.add_argument("--archived", action="store_true", help="include archived (sealed) queues")
    _sort_and_limit(p, "code")

    p = leaf(queues, "show", "queues:queue_show", "one queue: its settings, tags and job counts")
    p.add_argument("queue", metavar="Q", help="queue code or id")

    p = leaf(queues, "create", "queues:queue_create", "create a queue")
    p.add_argument("code", metavar="CODE", help="its code: lowercase letters, digits, _ and -")
    _queue_settings(p, creating=True)

    p = leaf(queues, "update", "queues:queue_update", "change a queue's settings (only those given)")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    _queue_settings(p, creating=False)

    p = leaf(queues, "archive", "queues:queue_archive", "archive (seal) a queue: it accepts no new jobs")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p = leaf(queues, "terminate", "queues:queue_terminate", "abort every unfinished job of a queue")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    _yes(p)
    p = leaf(queues, "delete", "queues:queue_delete", "delete a queue (its unfinished jobs move to the default queue)")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    _yes(p)

    p = leaf(queues, "tag", "queues:queue_tag", "add or replace tags of a queue")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p.add_argument("tags", metavar="KEY=VALUE", nargs="+", help="tags to set")
    p = leaf(queues, "untag", "queues:queue_untag", "remove tags of a queue")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p.add_argument("keys", metavar="KEY", nargs="+", help="keys of the tags to remove")

    # job ...
    job = commands.add_parser("job", parents=parents, help="submit, list, show, watch and control jobs")
    jobs = job.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=ClientParser)

    p = leaf(jobs, "submit", "jobs:job_submit", "submit a job: each PATH (and each --command) is a task")
    p.add_argument("paths", metavar="PATH", nargs="*", help="a file or directory to transfer")
    p.add_argument(
        "--command",
        action="append",
        dest="commands",
        default=[],
        metavar='"CMD"',
        help="a shell command to run as a task (repeatable)",
    )
    p.add_argument("--queue", metavar="Q", help="queue code or id (default: the default queue)")
    p.add_argument("--code", metavar="C", help="the job's code (default: from the first task)")
    p.add_argument("--dest", metavar="D", help="where transfers go")
    p.add_argument("--priority", type=int, metavar="N", help="0..1000 (default: the queue's)")
    p.add_argument("--paused", action="store_true", help="submit it on hold; `job resume` lets it run")
    _retry_options(p, of_job=True, clearing=False)
    p.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="a key of yours (e.g. a UUID): the same submission sent again with it makes no second job",
    )

    p = leaf(jobs, "list", "jobs:job_list", "the jobs, as a table")
    p.add_argument("--where", metavar="W", help='a filter, e.g. "status=failed OR status=aborted"')
    p.add_argument(
        "--phase",
        type=str.lower,
        choices=["active", "finished", "archived", "all"],
        default="active",
        help="which jobs: active (default; includes recently finished), finished, archived or all",
    )
    p.add_argument("--queue", metavar="Q", help="only this queue's jobs (code or id)")
    _sort_and_limit(p, "-created")

    p = leaf(jobs, "show", "jobs:job_show", "one job: its fields and its tasks")
    p.add_argument("job", metavar="ID", help="job id, id prefix or code")
    p.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"tasks to show (default {DEFAULT_LIMIT}; 0: all)"
    )

    p = leaf(
        jobs,
        "watch",
        "watch:job_watch",
        "follow jobs live until they finish (exit 0 when all are done, 1 when one failed or was aborted)",
    )
    p.add_argument("jobs", metavar="ID", nargs="+", help="job id, id prefix or code")

    for name, target, text in (
        ("pause", "jobs:job_pause", "put jobs on hold"),
        ("resume", "jobs:job_resume", "let paused jobs run on (a finished job runs again with `job rerun`)"),
        (
            "rerun",
            "jobs:job_rerun",
            "run finished jobs again: a failed or aborted one retries what did not finish; a done one "
            "runs every task again, after asking",
        ),
        ("abort", "jobs:job_abort", "abort jobs (asks first when more than one)"),
        ("delete", "jobs:job_delete", "delete jobs, after asking (their history stays)"),
    ):
        p = leaf(jobs, name, target, text)
        p.add_argument("jobs", metavar="ID", nargs="+", help="job id, id prefix or code")
        if name in ("rerun", "abort", "delete"):
            _yes(p)

    # task ...
    task = commands.add_parser("task", parents=parents, help="list and exclude a job's tasks")
    tasks = task.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=ClientParser)
    p = leaf(tasks, "list", "tasks:task_list", "a job's tasks, as a table")
    p.add_argument("job", metavar="JOB", help="job id, id prefix or code")
    p.add_argument("--where", metavar="W", help='a filter, e.g. "status<>done"')
    p.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N (default {DEFAULT_LIMIT}; 0: all)"
    )
    p = leaf(tasks, "exclude", "tasks:task_exclude", "exclude tasks from execution (tasks are never deleted)")
    p.add_argument("job", metavar="JOB", help="job id, id prefix or code")
    p.add_argument("tasks", metavar="TASK", nargs="+", help="task uri (0, 1, ...), id or id prefix")


def _yes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do it without asking (needed when stdin is not a terminal; on a terminal it asks)",
    )


def _sort_and_limit(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--sort",
        action="append",
        metavar="FIELD",
        help=f"sort by a field, '-' first for descending (default {default}; repeatable, or comma-separated)",
    )
    parser.set_defaults(default_sort=default)
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N (default {DEFAULT_LIMIT}; 0: all)"
    )


def _seconds(text: str) -> float:
    """A number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of seconds, not {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"0 or more seconds, not {text!r}")
    return value


def _optional_text(text: str) -> str | None:
    """A text, or none to clear a setting."""
    return None if text.strip().lower() in ("none", "null", "-") else text


def _optional_seconds(text: str) -> float | None:
    """A number of seconds, or none to clear a setting."""
    return None if text.strip().lower() in ("none", "null", "-") else _seconds(text)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number, not {text!r}") from None


def _optional_number(text: str) -> float | None:
    """A number, or none to clear a setting."""
    return None if text.strip().lower() in ("none", "null", "-") else _number(text)


def _retry_options(parser: argparse.ArgumentParser, *, of_job: bool, clearing: bool) -> list[argparse.Action]:
    """--retry-delay, --retry-backoff, --retry-max-delay and --retry-jitter (stored under the
    names of `RetrySettings`): the parts of a retry policy, each only when given."""
    unset = ": its queue's, else " if of_job else " "
    clear = "; 'none' clears it" if clearing else ""
    seconds, number = (_optional_seconds, _optional_number) if clearing else (_seconds, _number)
    options = (
        ("--retry-delay", seconds, "SECONDS", "wait after the first failed attempt", "10"),
        ("--retry-backoff", number, "FACTOR", "each further wait is this many times longer, 1..10", "2"),
        ("--retry-max-delay", seconds, "SECONDS", "no wait is longer", "600"),
        ("--retry-jitter", number, "FRACTION", "share of each wait drawn at random, 0..1", "0.2"),
    )
    return [
        parser.add_argument(
            flag, type=kind, default=argparse.SUPPRESS, metavar=metavar, help=f"{words} (default{unset}{d}){clear}"
        )
        for flag, kind, metavar, words, d in options
    ]


def _optional_int(text: str) -> int | None:
    """A whole number, or none/unlimited to clear a setting."""
    if text.strip().lower() in ("none", "unlimited", "null", "-"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number or 'none', not {text!r}") from None


def queue_settings() -> dict[str, tuple[Any, bool]]:
    """The fields of `QueueSettings`: name -> (type, whether None clears it)."""
    settings: dict[str, tuple[Any, bool]] = {}
    for name, hint in get_type_hints(QueueSettings).items():
        args = get_args(hint)
        nullable = get_origin(hint) in (Union, UnionType) and type(None) in args
        settings[name] = (next(a for a in args if a is not type(None)) if nullable else hint, nullable)
    return settings


def _queue_settings(parser: argparse.ArgumentParser, creating: bool) -> None:
    """An option for each field of `QueueSettings` (each stored under the field's name):
    those below in their own words, any other as `--its-name` (JSON documents have none)."""
    clear = "" if creating else "; 'none' clears it"
    worded = [
        parser.add_argument("--priority", type=int, metavar="N", help="0 (lowest) .. 1000 (highest)"),
        parser.add_argument(
            "--max-concurrency",
            type=int if creating else _optional_int,
            default=argparse.SUPPRESS,
            metavar="N",
            help=f"jobs of it running at once (default unlimited{clear})",
        ),
        parser.add_argument(
            "--mode",
            dest="execution_mode",
            type=str.upper,
            choices=["FIFO", "LIFO", "PRIORITY"],
            help="order of its jobs (default PRIORITY)",
            metavar="FIFO|LIFO|PRIORITY",
        ),
        parser.add_argument("--description", metavar="D", help="what it is for"),
        parser.add_argument("--default", action="store_true", help="make it the default queue"),
        parser.add_argument(
            "--status",
            type=str.upper,
            choices=["WAITING", "DISABLED"],
            metavar="waiting|disabled",
            help="disabled holds every job of it",
        ),
        parser.add_argument(
            "--idle-timeout",
            dest="idle_timeout_s",
            type=int if creating else _optional_int,
            default=argparse.SUPPRESS,
            metavar="SECONDS",
            help=f"idle timeout{clear}",
        ),
        parser.add_argument(
            "--max-attempts",
            type=int if creating else _optional_int,
            default=argparse.SUPPRESS,
            metavar="N",
            help=f"attempts per task before it fails (default 3){clear}",
        ),
        *_retry_options(parser, of_job=False, clearing=not creating),
    ]
    options = [o.option_strings[0] for o in worded]
    covered = {o.dest for o in worded}
    for name, (kind, nullable) in queue_settings().items():
        if name in covered or kind not in (int, str, bool):
            continue
        flag, words = "--" + name.replace("_", "-"), name.replace("_", " ")
        options.append(flag)
        if kind is bool:
            parser.add_argument(flag, action="store_true", help=words)
        elif nullable:
            kind = kind if creating else _optional_int if kind is int else _optional_text
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar="V", help=f"{words}{clear}")
        else:
            parser.add_argument(flag, type=kind, metavar="V", help=words)
    parser.set_defaults(setting_options=options)
    if creating:
        parser.add_argument("--tag", action="append", dest="tags", metavar="KEY=VALUE", help="a tag (repeatable)")
        parser.add_argument("--parent", metavar="Q", help="code of a parent queue (nested queues)")
