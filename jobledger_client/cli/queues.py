"""`jobledger queue list|show|create|update|archive|terminate|delete|tag|untag`."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from jobledger_client import Client, Queue
from jobledger_client.cli import lookup, output
from jobledger_client.cli.command import UsageError, limited, page, sorting


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
            "STATE": "archived" if q.archived else "",
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


def _show_queue(q: Queue, args: argparse.Namespace) -> None:
    if args.json:
        output.write_json(q.to_dict())
        return
    now = datetime.now(UTC)
    counts = f"{q.active_jobs} active, {q.successful_jobs} done, {q.failed_jobs} failed, {q.total_jobs} in all"
    output.show(
        output.fields(
            [
                ("code", q.code + ("  (the default queue)" if q.default else "")),
                ("id", q.id),
                ("status", output.status(q.status)),
                ("state", "archived (accepts no new jobs)" if q.archived else "active"),
                ("priority", q.priority),
                ("mode", q.execution_mode.lower()),
                ("max concurrency", "unlimited" if q.max_concurrency is None else q.max_concurrency),
                ("idle timeout", "-" if q.idle_timeout_s is None else output.duration(q.idle_timeout_s)),
                ("max attempts", "default (3)" if q.max_attempts is None else q.max_attempts),
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
    output.answer(args, created.to_dict(), f"created queue {created.code} ({created.id})")


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
    output.answer(args, q.to_dict(), f"archived queue {q.code}: it accepts no new jobs; those it has run on")


def queue_terminate(client: Client, args: argparse.Namespace) -> None:
    q = client.terminate_queue(args.queue)
    output.answer(args, q.to_dict(), f"terminated queue {q.code}: its unfinished jobs are aborted")


def queue_delete(client: Client, args: argparse.Namespace) -> None:
    deleted = client.delete_queue(args.queue)
    output.answer(
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
    output.answer(args, q.to_dict(), f"queue {q.code} tags: {output.tags(q.tags) or '(none)'}")
