"""`jobledger job submit|list|show|pause|resume|abort` (`job watch` is in `watch`)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from jobledger_client import Client, Job
from jobledger_client.cli import lookup, output
from jobledger_client.cli.command import UsageError, limited, page, sorting
from jobledger_client.cli.output import SHORT
from jobledger_client.cli.tasks import task_table


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
    }
    job = client.create_job(tasks=tasks, **{k: v for k, v in fields.items() if v is not None})
    count = f"{len(tasks)} task{'s' if len(tasks) != 1 else ''}"
    said = f"submitted job {job.id} ({job.code}) to queue {job.queue_code}: {count}, {job.status.lower()}"
    output.answer(args, job.to_dict(), said)


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
            "SPEED": output.speed(j.speed) if j.status == "RUNNING" else "",
            "LEFT": output.duration(j.etr_seconds) if j.status == "RUNNING" else "",
            "CREATED": output.ago(j.created, now),
            "USER": j.user or "",
        }
        for j in jobs
    ]
    right = {"PRI", "PROGRESS", "SIZE", "SPEED", "LEFT"}
    widths = {"CODE": 32, "QUEUE": 16, "USER": 24}
    output.show(output.table(rows, right=right, drop_empty={"SPEED", "LEFT", "USER"}, widths=widths))


def job_show(client: Client, args: argparse.Namespace) -> None:
    job = lookup.job(client, args.job)
    tasks = limited(client.tasks(job.id, first=page(args.limit)), args.limit, "tasks")
    if args.json:
        output.write_json({**job.to_dict(), "tasks": [t.to_dict() for t in tasks]})
        return
    parts: list[Any] = [_job_fields(job), Text()]
    if tasks:
        parts += [Text(f"tasks ({len(tasks)}):"), task_table(tasks)]
    else:
        parts.append(Text("no tasks"))
    output.show(Group(*parts))


def _job_fields(job: Job) -> Table:
    now = datetime.now(UTC)
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
            ("source", job.source or "-"),
            ("destination", job.destination or "-"),
            ("max attempts", "default" if job.max_attempts is None else job.max_attempts),
            ("metadata", json.dumps(job.metadata) if job.metadata else "-"),
            ("created", f"{output.iso(job.created)} ({output.ago(job.created, now)}) by {job.user or '-'}"),
            ("modified", f"{output.iso(job.modified)} ({output.ago(job.modified, now)}) by {job.modifier or '-'}"),
            ("finished", f"{output.iso(job.finished)} ({output.ago(job.finished, now)})" if job.finished else "-"),
        ]
    )


def _job_control(verb: str, change: Callable[[Client, str], Job]) -> Callable[[Client, argparse.Namespace], None]:
    def run(client: Client, args: argparse.Namespace) -> None:
        changed = [change(client, lookup.job_id(client, ref)) for ref in args.jobs]
        if args.json:
            output.write_json([j.to_dict() for j in changed] if len(args.jobs) > 1 else changed[0].to_dict())
            return
        for job in changed:
            output.say(f"{verb} job {job.id[:SHORT]} ({job.code}): {job.status.lower()}")

    return run


job_pause = _job_control("paused", lambda client, job_id: client.pause_job(job_id))
job_resume = _job_control("resumed", lambda client, job_id: client.resume_job(job_id))
job_abort = _job_control("aborted", lambda client, job_id: client.abort_job(job_id))
