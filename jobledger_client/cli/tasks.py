"""`jobledger task list|exclude`, and the table of tasks `job show` prints too."""

from __future__ import annotations

import argparse
import json
import shlex
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.table import Table

from jobledger_client import Client, Task
from jobledger_client.cli import lookup, output
from jobledger_client.cli.command import limited, page
from jobledger_client.cli.output import SHORT


def task_list(client: Client, args: argparse.Namespace) -> None:
    job = lookup.job(client, args.job)
    tasks = limited(client.tasks(job.id, where=args.where, first=page(args.limit)), args.limit, "tasks")
    if args.json:
        output.write_json([t.to_dict() for t in tasks])
        return
    if not tasks:
        output.say(f"no tasks of job {job.id[:SHORT]} ({job.code})" + (" match" if args.where else ""))
        return
    output.show(task_table(tasks))


def task_exclude(client: Client, args: argparse.Namespace) -> None:
    job = lookup.job(client, args.job)
    known = list(client.tasks(job.id, first=500))
    chosen: list[str] = []
    for ref in args.tasks:
        task = lookup.task(known, ref, job)
        if task.id not in chosen:
            chosen.append(task.id)
    changed = client.exclude_tasks(job.id, chosen)
    uris = ", ".join(t.uri for t in changed)
    count = f"{len(changed)} task{'s' if len(changed) != 1 else ''}"
    output.answer(
        args, [t.to_dict() for t in changed], f"excluded {count} of job {job.id[:SHORT]} ({job.code}): {uris}"
    )


def task_table(tasks: Iterable[Task]) -> Table:
    now = datetime.now(UTC)
    rows = [
        {
            "ID": t.id[:SHORT],
            "URI": t.uri,
            "STATUS": output.status(t.status),
            "PROGRESS": f"{t.progress}%",
            "SIZE": output.size(t.size),
            "SPEED": output.speed(t.speed) if t.status == "EXECUTING" else "-",
            "LEFT": output.duration(t.time_left) if t.status == "EXECUTING" else "-",
            "SOURCE": output.tail(_where_from(t.source), 40),
            "DESTINATION": output.tail(_where_from(t.destination), 32),
            "TRIES": t.attempts or "",
            "WORKER": t.worker or "",
            "REASON": t.reason or "",
            # Queued again after a failed attempt: not handed out before this.
            "NEXT TRY": output.due(t.retry_at, now) if t.status == "QUEUED" and t.retry_at else "",
            "ERROR": (t.error or "").replace("\n", " "),
        }
        for t in tasks
    ]
    return output.table(
        rows,
        right={"URI", "PROGRESS", "SIZE", "SPEED", "LEFT", "TRIES"},
        drop_empty={"DESTINATION", "TRIES", "WORKER", "REASON", "NEXT TRY", "ERROR"},
        widths={"WORKER": 20, "REASON": 72, "ERROR": 40},
    )


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
