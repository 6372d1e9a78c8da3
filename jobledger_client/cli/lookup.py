"""What the commands' arguments name: a job by its id, a unique prefix of it (the short
ids the tables show) or a unique code; a queue by code or id; a task of a job by uri
("0", "1", ...), id or id prefix."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from jobledger_client import Client, Job, NotFound, Queue, Task
from jobledger_client.cli.command import UsageError


def not_found(kind: str, key: str) -> NotFound:
    return NotFound(f"{kind} {key} does not exist", details={"kind": kind, "key": key})


def is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def quoted(value: str) -> str:
    """A value for the `where` language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def queue(client: Client, ref: str) -> Queue:
    found = client.queue(ref)
    if found is None:
        raise not_found("Queue", ref)
    return found


def find_jobs(client: Client, ref: str) -> list[Job]:
    """Jobs whose id starts with `ref`, or else whose code is `ref` (at most two: enough to
    tell one from several)."""
    prefix = ref.lower()
    if all(c in "0123456789abcdef-" for c in prefix):
        # Ids sort as text: the ones that start with the prefix come first from it on.
        after = client.jobs(where=f"id>={quoted(prefix)}", phase=None, order_by="id", first=2, max_items=2)
        matches = [j for j in after if j.id.startswith(prefix)]
        if matches:
            return matches
    return list(client.jobs(where=f"code={quoted(ref)}", phase=None, first=2, max_items=2))


def job_id(client: Client, ref: str) -> str:
    """The id of the job `ref` names: a full id as it is (the server checks it), else a unique
    id prefix or code."""
    if is_uuid(ref):
        return ref
    return job(client, ref).id


def job(client: Client, ref: str) -> Job:
    if is_uuid(ref):
        found = client.job(ref)
        if found is None:
            raise not_found("Job", ref)
        return found
    matches = find_jobs(client, ref)
    if not matches:
        raise not_found("Job", ref)
    if len(matches) > 1:
        first, second = matches[0].id, matches[1].id
        raise UsageError(f"{ref!r} names more than one job (e.g. {first} and {second}); give more of the id")
    return matches[0]


def task(tasks: Sequence[Task], ref: str, of: Job) -> Task:
    """A task by uri, then by id, then by a unique id prefix."""
    for candidate in tasks:
        if candidate.uri == ref:
            return candidate
    for candidate in tasks:
        if candidate.id == ref:
            return candidate
    prefixed = [t for t in tasks if t.id.startswith(ref.lower())] if len(ref) >= 4 else []
    if len(prefixed) > 1:
        raise UsageError(f"{ref!r} names more than one task of job {of.code}; give more of the id")
    if not prefixed:
        raise not_found("Task", f"{ref} of job {of.id}")
    return prefixed[0]
