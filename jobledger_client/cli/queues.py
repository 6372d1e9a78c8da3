"""`jobledger queue list|show|create|update|archive|terminate|delete|tag|untag`."""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobledger_client import Client, Queue
from jobledger_client.cli import lookup, output, queue_settings
from jobledger_client.cli.command import UsageError, confirm, limited, page, sorting
from jobledger_client.models import RetrySettings


def queue_list(client: Client, args: argparse.Namespace) -> None:
    found = client.queues(
        where=args.where, include_archived=args.archived, order_by=sorting(args), first=page(args.limit)
    )
    queues = limited(found, args.limit, "queues")
    if args.json:
        output.write_json([q.to_dict() for q in queues])
        return
    if not queues:
        output.say("no queues" + (" match" if args.where else ""))
        return
    now = datetime.now(UTC)
    rows = [
        {
            "CODE": q.code,
            "DEF": "*" if q.default else "",
            "STATUS": output.status(q.status),
            "STATE": "sealed" if q.archived else "",
            "PRI": q.priority,
            "MODE": q.execution_mode.lower(),
            "MAX": "-" if q.max_concurrency is None else q.max_concurrency,
            "ACTIVE": q.active_jobs,
            "DONE": q.successful_jobs,
            "FAILED": q.failed_jobs,
            "TOTAL": q.total_jobs,
            "TAGS": output.tags(q.tags),
            "CREATED": output.ago(q.created, now),
        }
        for q in queues
    ]
    output.show(
        output.table(
            rows, right={"PRI", "MAX", "ACTIVE", "DONE", "FAILED", "TOTAL"}, drop_empty={"DEF", "STATE", "TAGS"}
        )
    )


def queue_show(client: Client, args: argparse.Namespace) -> None:
    _show_queue(lookup.queue(client, args.queue), args)


# The fields `queue show` words in its own way; any other shows as `its name: its value`.
_WORDED = frozenset(
    {"id", "code", "default", "status", "state", "priority", "execution_mode", "max_concurrency", "idle_timeout_s"}
    | {"max_attempts", "active_jobs", "successful_jobs", "failed_jobs", "total_jobs", "description", "tags"}
    | {"metadata", "uri", "created", "user", "modified", "modifier"}
    | set(RetrySettings.__annotations__)
)


def _show_queue(q: Queue, args: argparse.Namespace) -> None:
    if args.json:
        output.write_json(q.to_dict())
        return
    now = datetime.now(UTC)
    counts = f"{q.active_jobs} active, {q.successful_jobs} done, {q.failed_jobs} failed, {q.total_jobs} in all"
    rest = [
        (f.name.replace("_", " "), _plain(getattr(q, f.name))) for f in dataclasses.fields(q) if f.name not in _WORDED
    ]
    output.show(
        output.fields(
            [
                ("code", q.code + ("  (the default queue)" if q.default else "")),
                ("id", q.id),
                ("status", output.status(q.status)),
                ("state", "sealed (archived: accepts no new jobs)" if q.archived else "active"),
                ("priority", q.priority),
                ("mode", q.execution_mode.lower()),
                ("max concurrency", "unlimited" if q.max_concurrency is None else q.max_concurrency),
                ("idle timeout", "-" if q.idle_timeout_s is None else output.duration(q.idle_timeout_s)),
                ("max attempts", "default (3)" if q.max_attempts is None else q.max_attempts),
                ("retries", output.retry_policy([("queue", q)])),
                *rest,
                ("jobs", counts),
                ("description", q.description or "-"),
                ("tags", output.tags(q.tags) or "-"),
                ("metadata", json.dumps(q.metadata) if q.metadata else "-"),
                ("uri", q.uri),
                ("created", f"{output.iso(q.created)} ({output.ago(q.created, now)}) by {q.user or '-'}"),
                ("modified", f"{output.iso(q.modified)} ({output.ago(q.modified, now)}) by {q.modifier or '-'}"),
            ]
        )
    )


def _plain(value: Any) -> Any:
    """A value as `queue show` prints a field it has no words for."""
    if value is None or value in ("", {}, []):
        return "-"
    return json.dumps(value) if isinstance(value, dict | list) else value


def _queue_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, by field name (see `_queue_settings`)."""
    fields: dict[str, Any] = {}
    for name, (kind, nullable) in queue_settings().items():
        if not hasattr(args, name):
            continue  # no option, or one left out whose None would clear the field
        value = getattr(args, name)
        # A flag only ever sets true; a nullable setting is here only when given (None clears it).
        if (value is True) if kind is bool else (nullable or value is not None):
            fields[name] = value
    return fields


def queue_create(client: Client, args: argparse.Namespace) -> None:
    fields = _queue_fields(args)
    if args.tags:
        fields["tags"] = _parse_tags(args.tags)
    if args.parent:
        fields["parent"] = args.parent
    created = client.create_queue(args.code, **fields)
    output.answer(args, created.to_dict(), f"created queue {created.code} ({created.id})")


def queue_update(client: Client, args: argparse.Namespace) -> None:
    fields = _queue_fields(args)
    if not fields:
        options = args.setting_options
        raise UsageError(f"nothing to change: give {', '.join(options[:-1])} or {options[-1]}")
    _show_queue(client.update_queue(args.queue, **fields), args)


def queue_archive(client: Client, args: argparse.Namespace) -> None:
    q = client.archive_queue(args.queue)
    output.answer(args, q.to_dict(), f"archived queue {q.code}: it accepts no new jobs; those it has run on")


def _jobs(count: int) -> str:
    return f"{count} unfinished job{'s' if count != 1 else ''}"


def queue_terminate(client: Client, args: argparse.Namespace) -> None:
    found = lookup.queue(client, args.queue)
    confirm(args, f"terminate queue {found.code}: abort its {_jobs(found.active_jobs)}")
    q = client.terminate_queue(found.id)
    output.answer(args, q.to_dict(), f"terminated queue {q.code}: its unfinished jobs are aborted")


def queue_delete(client: Client, args: argparse.Namespace) -> None:
    found = lookup.queue(client, args.queue)
    confirm(args, f"delete queue {found.code}: its {_jobs(found.active_jobs)} move to the default queue")
    deleted = client.delete_queue(found.id)
    output.answer(
        args,
        {"id": deleted, "deleted": True},
        f"deleted queue {found.code} ({deleted}); its unfinished jobs moved to the default queue",
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
    output.answer(args, q.to_dict(), f"queue {q.code} tags: {output.tags(q.tags) or '(none)'}")
