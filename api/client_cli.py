"""`jobledger queue|job|task ...`: the service's queues, jobs and tasks from the command line.

Every command talks to a running service through `jobledger_client` (so it works
against any `jobledger serve`, near or far): `--url` (default $JOBLEDGER_URL or
http://127.0.0.1:8000/graphql), `--user` (default $JOBLEDGER_USER, recorded as the
actor of what it changes) and `--json` are accepted by every subcommand.

People get aligned tables (short ids, human sizes, relative times); `--json` gives
scripts the full records: a JSON array of objects for a list, an object for one
thing, one object per line for `job watch`. Failures print `jobledger: <message>`
on stderr (the server's words) and exit with 2.

Jobs are named by their id, by a unique prefix of it (the short ids the tables
show), or by their code when it is unique; queues by code or id; tasks (in
`task exclude`) by uri ("0", "1", ...), id or id prefix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import sys
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the client is imported when a command runs, not when `jobledger serve` starts
    from jobledger_client import Client, Job, JobProgress, Queue, Task

SHORT = 8  # characters of an id shown in tables
DEFAULT_LIMIT = 100
FINISHED = frozenset({"DONE", "FAILED", "ABORTED"})


class UsageError(Exception):
    """A request the command line itself refuses (exit 2, like the server's errors)."""


# -- the subcommands ----------------------------------------------------------------------


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
        "--user", default=argparse.SUPPRESS, help="who you are, recorded on the events (default: $JOBLEDGER_USER)"
    )
    options.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable JSON instead of tables"
    )
    parents = [common]

    def leaf(group: Any, name: str, run: Callable[[Client, argparse.Namespace], int | None], help: str) -> Any:
        parser = group.add_parser(name, parents=parents, help=help, description=help[:1].upper() + help[1:] + ".")
        parser.set_defaults(run=_command(run))
        return parser

    # queue ...
    queue = commands.add_parser("queue", parents=parents, help="list, show and change queues")
    queues = queue.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = leaf(queues, "list", queue_list, "the queues, as a table")
    p.add_argument("--where", metavar="W", help='a filter, e.g. "priority>=500 AND status=waiting"')
    p.add_argument("--archived", action="store_true", help="include archived (sealed) queues")
    _sort_and_limit(p, "code")

    p = leaf(queues, "show", queue_show, "one queue: its settings, tags and job counts")
    p.add_argument("queue", metavar="Q", help="queue code or id")

    p = leaf(queues, "create", queue_create, "create a queue")
    p.add_argument("code", metavar="CODE", help="its code: lowercase letters, digits, _ and -")
    _queue_settings(p, creating=True)

    p = leaf(queues, "update", queue_update, "change a queue's settings (only those given)")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    _queue_settings(p, creating=False)

    p = leaf(queues, "archive", queue_archive, "archive (seal) a queue: it accepts no new jobs")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p = leaf(queues, "terminate", queue_terminate, "abort every unfinished job of a queue")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p = leaf(queues, "delete", queue_delete, "delete a queue (its unfinished jobs move to the default queue)")
    p.add_argument("queue", metavar="Q", help="queue code or id")

    p = leaf(queues, "tag", queue_tag, "add or replace tags of a queue")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p.add_argument("tags", metavar="KEY=VALUE", nargs="+", help="tags to set")
    p = leaf(queues, "untag", queue_untag, "remove tags of a queue")
    p.add_argument("queue", metavar="Q", help="queue code or id")
    p.add_argument("keys", metavar="KEY", nargs="+", help="keys of the tags to remove")

    # job ...
    job = commands.add_parser("job", parents=parents, help="submit, list, show, watch and control jobs")
    jobs = job.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = leaf(jobs, "submit", job_submit, "submit a job: each PATH (and each --command) is a task")
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

    p = leaf(jobs, "list", job_list, "the jobs, as a table")
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

    p = leaf(jobs, "show", job_show, "one job: its fields and its tasks")
    p.add_argument("job", metavar="ID", help="job id, id prefix or code")
    p.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"tasks to show (default {DEFAULT_LIMIT}; 0: all)"
    )

    p = leaf(
        jobs,
        "watch",
        job_watch,
        "follow jobs live until they finish (exit 0 when all are done, 1 when one failed or was aborted)",
    )
    p.add_argument("jobs", metavar="ID", nargs="+", help="job id, id prefix or code")

    for name, run, text in (
        ("pause", job_pause, "put jobs on hold"),
        ("resume", job_resume, "let paused (or aborted, failed) jobs run again"),
        ("abort", job_abort, "abort jobs"),
    ):
        p = leaf(jobs, name, run, text)
        p.add_argument("jobs", metavar="ID", nargs="+", help="job id, id prefix or code")

    # task ...
    task = commands.add_parser("task", parents=parents, help="list and exclude a job's tasks")
    tasks = task.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = leaf(tasks, "list", task_list, "a job's tasks, as a table")
    p.add_argument("job", metavar="JOB", help="job id, id prefix or code")
    p.add_argument("--where", metavar="W", help='a filter, e.g. "status<>done"')
    p.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N (default {DEFAULT_LIMIT}; 0: all)"
    )
    p = leaf(tasks, "exclude", task_exclude, "exclude tasks from execution (tasks are never deleted)")
    p.add_argument("job", metavar="JOB", help="job id, id prefix or code")
    p.add_argument("tasks", metavar="TASK", nargs="+", help="task uri (0, 1, ...), id or id prefix")


def _sort_and_limit(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--sort",
        action="append",
        metavar="FIELD",
        help=f"sort by a field, '-' first for descending (default {default}; repeatable, or comma-separated)",
    )
    parser.set_defaults(default_sort=default)
    # `--sort -created`: a word after a single dash is a value here (like a negative number),
    # not an unknown option. argparse has no public switch for it.
    parser._negative_number_matcher = re.compile(r"^-(\d+|\d*\.\d+|[A-Za-z_][\w.,+-]*)$")
    parser.add_argument(
        "--limit", type=int, default=DEFAULT_LIMIT, metavar="N", help=f"at most N (default {DEFAULT_LIMIT}; 0: all)"
    )


def _optional_int(text: str) -> int | None:
    """A whole number, or none/unlimited to clear a setting."""
    if text.strip().lower() in ("none", "unlimited", "null", "-"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number or 'none', not {text!r}") from None


def _queue_settings(parser: argparse.ArgumentParser, creating: bool) -> None:
    clear = "" if creating else "; 'none' clears it"
    parser.add_argument("--priority", type=int, metavar="N", help="0 (lowest) .. 1000 (highest)")
    parser.add_argument(
        "--max-concurrency",
        type=int if creating else _optional_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"jobs of it running at once (default unlimited{clear})",
    )
    parser.add_argument(
        "--mode",
        type=str.upper,
        choices=["FIFO", "LIFO", "PRIORITY"],
        help="order of its jobs (default PRIORITY)",
        metavar="FIFO|LIFO|PRIORITY",
    )
    parser.add_argument("--description", metavar="D", help="what it is for")
    parser.add_argument("--default", action="store_true", help="make it the default queue")
    parser.add_argument(
        "--status",
        type=str.upper,
        choices=["WAITING", "DISABLED"],
        metavar="waiting|disabled",
        help="disabled holds every job of it",
    )
    parser.add_argument(
        "--idle-timeout",
        type=int if creating else _optional_int,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help=f"idle timeout{clear}",
    )
    parser.add_argument(
        "--max-attempts",
        type=int if creating else _optional_int,
        default=argparse.SUPPRESS,
        metavar="N",
        help=f"attempts per task before it fails (default 3){clear}",
    )
    if creating:
        parser.add_argument("--tag", action="append", dest="tags", metavar="KEY=VALUE", help="a tag (repeatable)")
        parser.add_argument("--parent", metavar="Q", help="code of a parent queue (nested queues)")


# -- running a command --------------------------------------------------------------------


def _command(run: Callable[[Client, argparse.Namespace], int | None]) -> Callable[[Any, argparse.Namespace], int]:
    """`run(client, args)` as a `jobledger` command: a client on --url/--user, and every
    failure as `jobledger: <message>` with exit code 2."""

    def command(settings: Any, args: argparse.Namespace) -> int:
        from jobledger_client import Client, JobledgerError, Unavailable

        args.json = getattr(args, "json", False)
        client = Client(getattr(args, "url", None), getattr(args, "user", None))
        try:
            return run(client, args) or 0
        except Unavailable as exc:
            status = exc.details.get("status")
            if status:
                _fail(f"the service at {client.url} answered HTTP {status}, not GraphQL: is --url right?")
            else:
                _fail(f"cannot reach the service at {client.url}: is `jobledger serve` running?")
            return 2
        except JobledgerError as exc:
            _fail(exc.message)
            return 2
        except UsageError as exc:
            _fail(str(exc))
            return 2
        except BrokenPipeError:  # the reader (e.g. `head`) has had enough
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        finally:
            client.close()

    return command


def _fail(message: str) -> None:
    print(f"jobledger: {message}", file=sys.stderr)


def _not_found(kind: str, key: str) -> Exception:
    from jobledger_client import NotFound

    return NotFound(f"{kind} {key} does not exist", details={"kind": kind, "key": key})


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sorting(args: argparse.Namespace) -> list[str]:
    if not args.sort:
        return [args.default_sort]
    return [part.strip() for item in args.sort for part in item.split(",") if part.strip()]


def _page(limit: int) -> int:
    """A page that holds the limit and one more (to tell whether there is more), in one request."""
    return min(limit + 1, 500) if limit > 0 else 500


def _limited(items: Iterator[Any], limit: int, what: str) -> list[Any]:
    """At most `limit` items (0: all); says on stderr when there were more."""
    if limit < 0:
        raise UsageError("--limit is 0 (all) or more")
    shown: list[Any] = []
    for item in items:
        if limit and len(shown) >= limit:
            total = getattr(items, "total_count", None)
            more = f"{total:,}" if total is not None else "more than that"
            print(f"({limit} of {more} {what} shown; --limit N for more, 0 for all)", file=sys.stderr)
            break
        shown.append(item)
    return shown


# -- queues -------------------------------------------------------------------------------


def queue_list(client: Client, args: argparse.Namespace) -> None:
    found = client.queues(
        where=args.where, include_archived=args.archived, order_by=_sorting(args), first=_page(args.limit)
    )
    queues = _limited(found, args.limit, "queues")
    if args.json:
        _json([q.to_dict() for q in queues])
        return None
    if not queues:
        print("no queues" + (" match" if args.where else ""))
        return None
    now = _now()
    rows = [
        {
            "CODE": q.code,
            "DEF": "*" if q.default else "",
            "STATUS": q.status.lower(),
            "STATE": "archived" if q.archived else "",
            "PRI": q.priority,
            "MODE": q.execution_mode.lower(),
            "MAX": "-" if q.max_concurrency is None else q.max_concurrency,
            "ACTIVE": q.active_jobs,
            "DONE": q.successful_jobs,
            "FAILED": q.failed_jobs,
            "TOTAL": q.total_jobs,
            "TAGS": _tags(q.tags),
            "CREATED": _ago(q.created, now),
        }
        for q in queues
    ]
    _table(rows, right={"PRI", "MAX", "ACTIVE", "DONE", "FAILED", "TOTAL"}, drop_empty={"DEF", "STATE", "TAGS"})
    return None


def _queue(client: Client, ref: str) -> Queue:
    found = client.queue(ref)
    if found is None:
        raise _not_found("Queue", ref)
    return found


def queue_show(client: Client, args: argparse.Namespace) -> None:
    _show_queue(_queue(client, args.queue), args)


def _show_queue(q: Queue, args: argparse.Namespace) -> None:
    if args.json:
        _json(q.to_dict())
        return None
    now = _now()
    _fields(
        [
            ("code", q.code + ("  (the default queue)" if q.default else "")),
            ("id", q.id),
            ("status", q.status.lower()),
            ("state", "archived (accepts no new jobs)" if q.archived else "active"),
            ("priority", q.priority),
            ("mode", q.execution_mode.lower()),
            ("max concurrency", "unlimited" if q.max_concurrency is None else q.max_concurrency),
            ("idle timeout", "-" if q.idle_timeout_s is None else _duration(q.idle_timeout_s)),
            ("max attempts", "default (3)" if q.max_attempts is None else q.max_attempts),
            (
                "jobs",
                f"{q.active_jobs} active, {q.successful_jobs} done, {q.failed_jobs} failed, {q.total_jobs} in all",
            ),
            ("description", q.description or "-"),
            ("tags", _tags(q.tags) or "-"),
            ("metadata", json.dumps(q.metadata) if q.metadata else "-"),
            ("uri", q.uri),
            ("created", f"{_iso(q.created)} ({_ago(q.created, now)}) by {q.user or '-'}"),
            ("modified", f"{_iso(q.modified)} ({_ago(q.modified, now)}) by {q.modifier or '-'}"),
        ]
    )
    return None


def _queue_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for option, name in (
        ("priority", "priority"),
        ("mode", "execution_mode"),
        ("description", "description"),
        ("status", "status"),
    ):
        if getattr(args, option) is not None:
            fields[name] = getattr(args, option)
    for option, name in (
        ("max_concurrency", "max_concurrency"),
        ("idle_timeout", "idle_timeout_s"),
        ("max_attempts", "max_attempts"),
    ):
        if hasattr(args, option):  # absent unless given; None clears it (update)
            fields[name] = getattr(args, option)
    if args.default:
        fields["default"] = True
    return fields


def queue_create(client: Client, args: argparse.Namespace) -> None:
    fields = _queue_fields(args)
    if args.tags:
        fields["tags"] = _parse_tags(args.tags)
    if args.parent:
        fields["parent"] = args.parent
    created = client.create_queue(args.code, **fields)
    _answer(args, created.to_dict(), f"created queue {created.code} ({created.id})")


def queue_update(client: Client, args: argparse.Namespace) -> None:
    fields = _queue_fields(args)
    if not fields:
        raise UsageError(
            "nothing to change: give --priority, --max-concurrency, --mode, --description, --default, "
            "--status, --idle-timeout or --max-attempts"
        )
    _show_queue(client.update_queue(args.queue, **fields), args)


def queue_archive(client: Client, args: argparse.Namespace) -> None:
    q = client.archive_queue(args.queue)
    _answer(args, q.to_dict(), f"archived queue {q.code}: it accepts no new jobs; those it has run on")


def queue_terminate(client: Client, args: argparse.Namespace) -> None:
    q = client.terminate_queue(args.queue)
    _answer(args, q.to_dict(), f"terminated queue {q.code}: its unfinished jobs are aborted")


def queue_delete(client: Client, args: argparse.Namespace) -> None:
    deleted = client.delete_queue(args.queue)
    _answer(
        args,
        {"id": deleted, "deleted": True},
        f"deleted queue {args.queue} ({deleted}); its unfinished jobs moved to the default queue",
    )


def _parse_tags(items: Sequence[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"a tag is KEY=VALUE, not {item!r}")
        tags[key.strip()] = value
    return tags


def queue_tag(client: Client, args: argparse.Namespace) -> None:
    _show_tags(client.add_queue_tags(args.queue, _parse_tags(args.tags)), args)


def queue_untag(client: Client, args: argparse.Namespace) -> None:
    _show_tags(client.remove_queue_tags(args.queue, args.keys), args)


def _show_tags(q: Queue, args: argparse.Namespace) -> None:
    _answer(args, q.to_dict(), f"queue {q.code} tags: {_tags(q.tags) or '(none)'}")


# -- jobs ---------------------------------------------------------------------------------


def _find_jobs(client: Client, ref: str) -> list[Job]:
    """Jobs whose id starts with `ref`, or else whose code is `ref` (at most two: enough to
    tell one from several)."""
    prefix = ref.lower()
    if all(c in "0123456789abcdef-" for c in prefix):
        # Ids sort as text: the ones that start with the prefix come first from it on.
        after = client.jobs(where=f"id>={_quoted(prefix)}", phase=None, order_by="id", first=2, max_items=2)
        matches = [j for j in after if j.id.startswith(prefix)]
        if matches:
            return matches
    return list(client.jobs(where=f"code={_quoted(ref)}", phase=None, first=2, max_items=2))


def _job_id(client: Client, ref: str) -> str:
    """The id of the job `ref` names: a full id as it is (the server checks it), else a unique
    id prefix or code."""
    if _is_uuid(ref):
        return ref
    return _load_job(client, ref).id


def _load_job(client: Client, ref: str) -> Job:
    if _is_uuid(ref):
        found = client.job(ref)
        if found is None:
            raise _not_found("Job", ref)
        return found
    matches = _find_jobs(client, ref)
    if not matches:
        raise _not_found("Job", ref)
    if len(matches) > 1:
        first, second = matches[0].id, matches[1].id
        raise UsageError(f"{ref!r} names more than one job (e.g. {first} and {second}); give more of the id")
    return matches[0]


def _task_input(path: str) -> dict[str, Any]:
    # A relative path that exists here is sent absolute: the worker does not share our cwd.
    if not os.path.isabs(path) and os.path.exists(path):
        path = os.path.abspath(path)
    return {"source": path}


def job_submit(client: Client, args: argparse.Namespace) -> None:
    tasks = [_task_input(p) for p in args.paths]
    tasks += [{"source": {"kind": "command", "command": c}} for c in args.commands]
    if not tasks:
        raise UsageError("give at least one PATH or --command to run")
    fields: dict[str, Any] = {
        "queue": args.queue,
        "code": args.code,
        "destination": args.dest,
        "priority": args.priority,
        "status": "paused" if args.paused else None,
    }
    job = client.create_job(tasks=tasks, **{k: v for k, v in fields.items() if v is not None})
    if args.json:
        _json(job.to_dict())
        return None
    count = f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}"
    print(f"submitted job {job.id} ({job.code}) to queue {job.queue_code}: {count}, {job.status.lower()}")
    return None


def job_list(client: Client, args: argparse.Namespace) -> None:
    if args.queue:
        _queue(client, args.queue)  # a queue that does not exist is an error, not an empty list
    phase = None if args.phase == "all" else args.phase.upper()
    found = client.jobs(
        where=args.where, phase=phase, queue=args.queue, order_by=_sorting(args), first=_page(args.limit)
    )
    jobs = _limited(found, args.limit, "jobs")
    if args.json:
        _json([j.to_dict() for j in jobs])
        return None
    if not jobs:
        print("no jobs" + (" match" if args.where or args.queue else "") + _phase_note(args.phase))
        return None
    now = _now()
    rows = [
        {
            "ID": j.id[:SHORT],
            "CODE": _cut(j.code, 32),
            "QUEUE": _cut(j.queue_code, 16),
            "STATUS": j.status.lower(),
            "PRI": j.priority,
            "PROGRESS": f"{j.progress}%",
            "SIZE": _size(j.size),
            "SPEED": _speed(j.speed) if j.status == "RUNNING" else "",
            "LEFT": _duration(j.etr_seconds) if j.status == "RUNNING" else "",
            "CREATED": _ago(j.created, now),
            "USER": _cut(j.user or "", 24),
        }
        for j in jobs
    ]
    _table(rows, right={"PRI", "PROGRESS", "SIZE", "SPEED", "LEFT"}, drop_empty={"SPEED", "LEFT", "USER"})
    return None


def _phase_note(phase: str) -> str:
    return {"active": "", "all": ""}.get(phase, f" ({phase})")


def job_show(client: Client, args: argparse.Namespace) -> None:
    job = _load_job(client, args.job)
    tasks = _limited(client.tasks(job.id, first=_page(args.limit)), args.limit, "tasks")
    if args.json:
        _json({**job.to_dict(), "tasks": [t.to_dict() for t in tasks]})
        return None
    now = _now()
    running = job.status == "RUNNING"
    _fields(
        [
            ("id", job.id),
            ("code", job.code),
            ("queue", job.queue_code),
            ("status", f"{job.status.lower()} ({job.phase.lower()})"),
            ("priority", job.priority),
            ("progress", f"{_bar(job.progress, 20)} {job.progress}%"),
            ("size", _size(job.size)),
            ("speed", _speed(job.speed) if running else "-"),
            ("time left", _duration(job.etr_seconds) if running else "-"),
            ("source", job.source or "-"),
            ("destination", job.destination or "-"),
            ("max attempts", "default" if job.max_attempts is None else job.max_attempts),
            ("metadata", json.dumps(job.metadata) if job.metadata else "-"),
            ("created", f"{_iso(job.created)} ({_ago(job.created, now)}) by {job.user or '-'}"),
            ("modified", f"{_iso(job.modified)} ({_ago(job.modified, now)}) by {job.modifier or '-'}"),
            ("finished", f"{_iso(job.finished)} ({_ago(job.finished, now)})" if job.finished else "-"),
        ]
    )
    print()
    if not tasks:
        print("no tasks")
        return None
    print(f"tasks ({len(tasks)}):")
    _task_table(tasks)
    return None


def _job_control(verb: str, change: Callable[[Client, str], Job]) -> Callable[[Client, argparse.Namespace], None]:
    def run(client: Client, args: argparse.Namespace) -> None:
        changed = [change(client, _job_id(client, ref)) for ref in args.jobs]
        if args.json:
            _json([j.to_dict() for j in changed] if len(args.jobs) > 1 else changed[0].to_dict())
            return None
        for job in changed:
            print(f"{verb} job {job.id[:SHORT]} ({job.code}): {job.status.lower()}")
        return None

    return run


job_pause = _job_control("paused", lambda client, job_id: client.pause_job(job_id))
job_resume = _job_control("resumed", lambda client, job_id: client.resume_job(job_id))
job_abort = _job_control("aborted", lambda client, job_id: client.abort_job(job_id))


# -- job watch ----------------------------------------------------------------------------


class ProgressView:
    """What `job watch` prints: bars redrawn in place on a terminal, a line per change
    otherwise, one JSON object per report with --json."""

    def __init__(self, jobs: Sequence[Job], as_json: bool, live: bool) -> None:
        self.jobs = list(jobs)
        self.as_json = as_json
        self.live = live and not as_json
        self.latest: dict[str, JobProgress | None] = {j.id: None for j in self.jobs}
        self.printed: dict[str, str] = {}
        self.drawn = False
        self.width = max(len(j.code) for j in self.jobs) if self.jobs else 0
        self.width = min(self.width, 24)
        self.unicode = (sys.stdout.encoding or "").lower().replace("-", "") in ("utf8", "utf16")

    def report(self, progress: JobProgress) -> None:
        self.latest[progress.job_id] = progress
        if self.as_json:
            record = {**progress.to_dict(), "etr_seconds": progress.etr_seconds, "finished": progress.finished}
            sys.stdout.write(json.dumps(record) + "\n")
        elif self.live:
            self._redraw()
        else:
            line = self._line(next(j for j in self.jobs if j.id == progress.job_id), progress, bar=False)
            if self.printed.get(progress.job_id) != line:
                self.printed[progress.job_id] = line
                sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def start(self) -> None:
        if self.live:
            self._redraw()
            sys.stdout.flush()

    def _redraw(self) -> None:
        out = []
        if self.drawn:
            out.append(f"\x1b[{len(self.jobs)}F")  # back to the first bar's line
        columns = shutil.get_terminal_size((100, 24)).columns
        for job in self.jobs:  # never wider than the terminal: a wrapped line would break the redraw
            out.append(self._line(job, self.latest[job.id], bar=True)[: columns - 1] + "\x1b[K\n")
        self.drawn = True
        sys.stdout.write("".join(out))

    def _line(self, job: Job, p: JobProgress | None, bar: bool) -> str:
        name = f"{job.id[:SHORT]}  {_cut(job.code, self.width):<{self.width}}"
        if p is None:
            return f"{name}  waiting for the first report..."
        status = p.status.lower()
        percent = f"{p.progress:>3}%"
        running = p.status == "RUNNING"
        speed = _speed(p.speed) if running and p.speed > 0 else ""
        left = f"{_duration(p.etr_seconds)} left" if running and p.etr_seconds is not None else ""
        size = _size(p.size) if p.size >= 0 else ""
        tail = f"{status:<8}  {speed:>10}  {left:>12}  {size:>8}".rstrip()
        if not bar:
            return f"{name}  {percent}  {tail}"
        columns = shutil.get_terminal_size((100, 24)).columns
        fixed = len(name) + 2 + 2 + 1 + 4 + 2 + 8 + 2 + 10 + 2 + 12 + 2 + 8
        width = max(10, min(40, columns - fixed - 1))
        return f"{name}  {_bar(p.progress, width, self.unicode)} {percent}  {tail}"


def job_watch(client: Client, args: argparse.Namespace) -> int:
    jobs: list[Job] = []
    for ref in args.jobs:
        job = _load_job(client, ref)
        if all(j.id != job.id for j in jobs):
            jobs.append(job)
    view = ProgressView(jobs, args.json, sys.stdout.isatty())
    view.start()
    asyncio.run(_watch(client.url, client.user, jobs, view))
    final = [view.latest[j.id] for j in jobs]
    return 0 if all(p is not None and p.status == "DONE" for p in final) else 1


async def _watch(url: str, user: str | None, jobs: Sequence[Job], view: ProgressView) -> None:
    from jobledger_client import AsyncClient

    async with AsyncClient(url, user) as client:

        async def follow(job: Job) -> None:
            async for progress in client.watch(job.id):  # type: ignore[attr-defined]  # async on AsyncClient
                view.report(progress)

        try:
            async with asyncio.TaskGroup() as group:
                for job in jobs:
                    group.create_task(follow(job))
        except ExceptionGroup as group_error:  # the first failure is the one to tell
            raise group_error.exceptions[0] from None


# -- tasks --------------------------------------------------------------------------------


def task_list(client: Client, args: argparse.Namespace) -> None:
    job = _load_job(client, args.job)
    tasks = _limited(client.tasks(job.id, where=args.where, first=_page(args.limit)), args.limit, "tasks")
    if args.json:
        _json([t.to_dict() for t in tasks])
        return None
    if not tasks:
        print(f"no tasks of job {job.id[:SHORT]} ({job.code})" + (" match" if args.where else ""))
        return None
    _task_table(tasks)
    return None


def task_exclude(client: Client, args: argparse.Namespace) -> None:
    job = _load_job(client, args.job)
    known = list(client.tasks(job.id, first=500))
    chosen: list[str] = []
    for ref in args.tasks:
        task = _pick_task(known, ref, job)
        if task.id not in chosen:
            chosen.append(task.id)
    changed = client.exclude_tasks(job.id, chosen)
    if args.json:
        _json([t.to_dict() for t in changed])
        return None
    uris = ", ".join(t.uri for t in changed)
    count = f"{len(changed)} task{'s' if len(changed) != 1 else ''}"
    print(f"excluded {count} of job {job.id[:SHORT]} ({job.code}): {uris}")
    return None


def _pick_task(tasks: Sequence[Task], ref: str, job: Job) -> Task:
    """A task by uri, then by id, then by a unique id prefix."""
    for task in tasks:
        if task.uri == ref:
            return task
    for task in tasks:
        if task.id == ref:
            return task
    prefixed = [t for t in tasks if t.id.startswith(ref.lower())] if len(ref) >= 4 else []
    if len(prefixed) > 1:
        raise UsageError(f"{ref!r} names more than one task of job {job.code}; give more of the id")
    if not prefixed:
        raise _not_found("Task", f"{ref} of job {job.id}")
    return prefixed[0]


def _task_table(tasks: Iterable[Task]) -> None:
    rows = [
        {
            "ID": t.id[:SHORT],
            "URI": t.uri,
            "STATUS": t.status.lower(),
            "PROGRESS": f"{t.progress}%",
            "SIZE": _size(t.size),
            "SOURCE": _cut(_where_from(t.source), 40, keep_end=True),
            "DESTINATION": _cut(_where_from(t.destination), 32, keep_end=True),
            "TRIES": t.attempts or "",
            "WORKER": _cut(t.worker or "", 20),
            "ERROR": _cut((t.error or "").replace("\n", " "), 40),
        }
        for t in tasks
    ]
    _table(rows, right={"URI", "PROGRESS", "SIZE", "TRIES"}, drop_empty={"DESTINATION", "TRIES", "WORKER", "ERROR"})


def _where_from(value: Any) -> str:
    """A task's source or destination in a few words: a path, or `$ command`."""
    if value is None:
        return ""
    if isinstance(value, dict):
        if value.get("kind") == "command" or "command" in value:
            command = value.get("command")
            text = shlex.join(command) if isinstance(command, list) else str(command)
            return f"$ {text}"
        if "path" in value:
            return str(value["path"])
        return json.dumps(value)
    return str(value)


# -- output -------------------------------------------------------------------------------


def _answer(args: argparse.Namespace, data: Any, line: str) -> None:
    """A command's one-line answer, or its data as JSON with --json."""
    if args.json:
        _json(data)
    else:
        print(line)


def _json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _table(rows: list[dict[str, Any]], right: Iterable[str] = (), drop_empty: Iterable[str] = ()) -> None:
    """Rows as aligned columns under their headers; optional columns that are empty in every
    row are left out."""
    right, drop_empty = set(right), set(drop_empty)
    headers = [h for h in rows[0] if h not in drop_empty or any(str(r[h]) not in ("", "-") for r in rows)]
    cells = [[str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if h in right else v.ljust(w) for h, v, w in zip(headers, values, widths, strict=True)]
        return "  ".join(parts).rstrip()

    print(line(headers))
    for row in cells:
        print(line(row))


def _fields(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        print(f"{key + ':':<{width + 1}}  {value}")


def _cut(text: str, width: int, keep_end: bool = False) -> str:
    if len(text) <= width:
        return text
    return "…" + text[-(width - 1) :] if keep_end else text[: width - 1] + "…"


def _tags(tags: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(tags.items()))


def _size(size: int | None) -> str:
    """Bytes in decimal units: 950 B, 1.2 kB, 34.5 MB, 1.2 GB; '-' when unknown."""
    if size is None or size < 0:
        return "-"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"  # pragma: no cover - the loop returns


def _speed(mb_per_s: float) -> str:
    if mb_per_s <= 0:
        return "-"
    if mb_per_s >= 1000:
        return f"{mb_per_s / 1000:.1f} GB/s"
    return f"{mb_per_s:.1f} MB/s" if mb_per_s >= 0.1 else f"{mb_per_s * 1000:.0f} kB/s"


def _duration(seconds: int | float | None) -> str:
    """45s, 4m10s, 2h05m, 3d04h; '-' when unknown."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _now() -> datetime:
    return datetime.now(UTC)


def _ago(moment: datetime | None, now: datetime) -> str:
    """`12s ago`, `5m ago`, `3h ago`, `2d ago`; the date after a week."""
    if moment is None:
        return "-"
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return "just now" if seconds > -5 else _iso(moment)
    if seconds < 60:
        return f"{int(seconds)}s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    if seconds < 7 * 86400:
        return f"{int(seconds // 86400)}d ago"
    return moment.strftime("%Y-%m-%d")


def _iso(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _bar(percent: int, width: int, unicode: bool = False) -> str:
    filled = max(0, min(width, round(percent * width / 100)))
    full, empty = ("█", "░") if unicode else ("#", "-")
    return "[" + full * filled + empty * (width - filled) + "]"
