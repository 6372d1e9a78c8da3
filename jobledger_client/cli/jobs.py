"""`jobledger job submit|list|show|pause|resume|abort` (`job watch` is in `watch`)."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from jobledger_client import Client, Job, Queue
from jobledger_client.cli import lookup, output
from jobledger_client.cli.command import UsageError, confirm, limited, page, sorting
from jobledger_client.cli.output import SHORT
from jobledger_client.cli.tasks import task_table
from jobledger_client.models import RetrySettings, SubmittedJob


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
        "idempotency_key": args.idempotency_key,
        # The parts of its retry policy given (`--retry-delay`...); the rest are its queue's.
        **{name: getattr(args, name) for name in RetrySettings.__annotations__ if hasattr(args, name)},
    }
    job = client.create_job(tasks=tasks, **{k: v for k, v in fields.items() if v is not None})
    said = f"submitted job {job.id} ({job.code}) to queue {job.queue_code}: {_what_was_made(job, len(tasks))}"
    output.answer(args, job.to_dict(), f"{said}, {job.status.lower()}")


def _what_was_made(job: SubmittedJob, sent: int) -> str:
    """The tasks the service made, in words, as it says: created, and merged as duplicates."""
    counts = job.task_counts
    if counts is None:  # a service that does not say
        return f"{_tasks(sent)} sent"
    if not counts.merged:
        return _tasks(counts.created)
    merged = "a duplicate" if counts.merged == 1 else "duplicates"
    return f"{_tasks(counts.created)} created, {counts.merged} merged as {merged}" + (
        " of it" if counts.created == 1 else ""
    )


def _tasks(count: int) -> str:
    return _counted(count, "task")


def _counted(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def job_list(client: Client, args: argparse.Namespace) -> None:
    if args.queue:
        lookup.queue(client, args.queue)  # a queue that does not exist is an error, not an empty list
    phase = None if args.phase == "all" else args.phase.upper()
    found = client.jobs(where=args.where, phase=phase, queue=args.queue, order_by=sorting(args), first=page(args.limit))
    jobs = limited(found, args.limit, "jobs")
    if args.json:
        output.write_json([j.to_dict() for j in jobs])
        return
    if not jobs:
        narrowed = " match" if args.where or args.queue else ""
        output.say("no jobs" + narrowed + {"active": "", "all": ""}.get(args.phase, f" ({args.phase})"))
        return
    now = datetime.now(UTC)
    rows = [
        {
            "ID": j.id[:SHORT],
            "CODE": j.code,
            "QUEUE": j.queue_code,
            "STATUS": output.status(j.status),
            "PRI": j.priority,
            "PROGRESS": f"{j.progress}%",
            "SIZE": output.size(j.size),
            "SPEED": output.speed(j.speed) if j.status == "RUNNING" else "-",
            "LEFT": output.duration(j.etr_seconds) if j.status == "RUNNING" else "-",
            "CREATED": output.ago(j.created, now),
            "USER": j.user or "",
        }
        for j in jobs
    ]
    right = {"PRI", "PROGRESS", "SIZE", "SPEED", "LEFT"}
    widths = {"CODE": 32, "QUEUE": 16, "USER": 24}
    output.show(output.table(rows, right=right, drop_empty={"USER"}, widths=widths))


def job_show(client: Client, args: argparse.Namespace) -> None:
    job = lookup.job(client, args.job)
    tasks = limited(client.tasks(job.id, first=page(args.limit)), args.limit, "tasks")
    if args.json:
        output.write_json({**job.to_dict(), "tasks": [t.to_dict() for t in tasks]})
        return
    parts: list[Any] = [_job_fields(job, client.queue(job.queue_id)), Text()]
    if tasks:
        parts += [Text(f"tasks ({len(tasks)}):"), task_table(tasks)]
    else:
        parts.append(Text("no tasks"))
    output.show(Group(*parts))


def _job_fields(job: Job, queue: Queue | None) -> Table:
    """The job's fields; its retry policy with the parts it leaves to `queue` (None: gone)."""
    now = datetime.now(UTC)
    owners: list[tuple[str, Any]] = [("job", job)] + ([("queue's", queue)] if queue else [])
    running = job.status == "RUNNING"
    return output.fields(
        [
            ("id", job.id),
            ("code", job.code),
            ("queue", job.queue_code),
            ("status", Text.assemble(output.status(job.status), f" ({job.phase.lower()})")),
            ("priority", job.priority),
            ("progress", output.progress(job.progress)),
            ("size", output.size(job.size)),
            ("speed", output.speed(job.speed) if running else "-"),
            ("time left", output.duration(job.etr_seconds) if running else "-"),
            ("reason", job.reason or "-"),
            ("source", job.source or "-"),
            ("destination", job.destination or "-"),
            ("max attempts", "default" if job.max_attempts is None else job.max_attempts),
            ("retries", output.retry_policy(owners)),
            ("metadata", json.dumps(job.metadata) if job.metadata else "-"),
            ("created", f"{output.iso(job.created)} ({output.ago(job.created, now)}) by {job.user or '-'}"),
            ("modified", f"{output.iso(job.modified)} ({output.ago(job.modified, now)}) by {job.modifier or '-'}"),
            ("finished", f"{output.iso(job.finished)} ({output.ago(job.finished, now)})" if job.finished else "-"),
        ]
    )


def _named(job: Job) -> str:
    return f"job {job.id[:SHORT]} ({job.code})"


def _report(args: argparse.Namespace, lines: list[tuple[str, Job]]) -> None:
    """What a control command did: a line a job (`<what was done>: <its status now>`), or the
    jobs as JSON (an object for one ID, an array for several)."""
    if args.json:
        jobs = [j.to_dict() for _, j in lines]
        output.write_json(jobs if len(args.jobs) > 1 else jobs[0])
        return
    for said, job in lines:
        output.say(f"{said}: {job.status.lower()}")


def _looked_up(client: Client, args: argparse.Namespace) -> list[Job]:
    """The jobs the IDs name, each once, all found before anything is changed."""
    jobs: list[Job] = []
    for ref in args.jobs:
        job = lookup.job(client, ref)
        if all(j.id != job.id for j in jobs):
            jobs.append(job)
    return jobs


def job_pause(client: Client, args: argparse.Namespace) -> None:
    _report(args, [(f"paused {_named(j)}", client.pause_job(j.id)) for j in _looked_up(client, args)])


def job_resume(client: Client, args: argparse.Namespace) -> None:
    """Paused jobs run on. A finished job is refused, with the way to run it again: resuming
    it would run it again, which `job rerun` does on purpose (the dashboard's "Run again")."""
    jobs = _looked_up(client, args)
    for job in jobs:
        if job.is_finished:
            raise UsageError(
                f"{_named(job)} is {job.status.lower()}, not paused: nothing to resume. "
                f"To run it again: jobledger job rerun {job.id[:SHORT]}"
            )
    lines = []
    for job in jobs:
        if job.status == "PAUSED":
            lines.append((f"resumed {_named(job)}", client.resume_job(job.id)))
        else:
            lines.append((f"{_named(job)} is not paused, left as it is", job))
    _report(args, lines)


def job_rerun(client: Client, args: argparse.Namespace) -> None:
    """Finished jobs run again: a failed or aborted one retries its tasks that did not finish;
    a done one runs every task again, which asks first (it redoes finished work)."""
    jobs = _looked_up(client, args)
    for job in jobs:
        if job.status == "PAUSED":
            raise UsageError(f"{_named(job)} is paused: `jobledger job resume {job.id[:SHORT]}` lets it run on")
        if not job.is_finished:
            raise UsageError(
                f"{_named(job)} is {job.status.lower()}: it has not finished, so there is nothing to rerun"
            )
    done = [j for j in jobs if j.status == "DONE"]
    if done:
        names = ", ".join(_named(j) + (f", {output.size(j.size)}" if j.size >= 0 else "") for j in done)
        were = "is" if len(done) == 1 else "are"
        confirm(args, f"{names} {were} done: running again runs every one of its tasks again")
    lines = [(f"rerunning ({j.status.lower()} before) {_named(j)}", client.resume_job(j.id)) for j in jobs]
    _report(args, lines)


def job_abort(client: Client, args: argparse.Namespace) -> None:
    jobs = _looked_up(client, args)
    if len(jobs) > 1:
        confirm(args, f"abort {len(jobs)} jobs ({', '.join(j.code for j in jobs)})")
    _report(args, [(f"aborted {_named(j)}", client.abort_job(j.id)) for j in jobs])


def job_delete(client: Client, args: argparse.Namespace) -> None:
    jobs = _looked_up(client, args)
    names = ", ".join(f"{_named(j)}, {j.status.lower()}" for j in jobs)
    confirm(args, f"delete {_counted(len(jobs), 'job')} ({names}); their history stays")
    deleted = [client.delete_job(j.id) for j in jobs]
    if args.json:
        records = [{"id": i, "deleted": True} for i in deleted]
        output.write_json(records if len(args.jobs) > 1 else records[0])
        return
    for job in jobs:
        output.say(f"deleted {_named(job)}")
