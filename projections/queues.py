"""The queues read model: every contract field, with exact job counts."""

from __future__ import annotations

import json

from domain.history import Record
from projections.batch import Batch, Handler, as_json
from projections.schema import QUEUES
from projections.stores import Tx

_COLUMNS = {
    "priority": "priority",
    "status": "status",
    "description": "description",
    "metadata": "metadata",
    "max_concurrency": "max_concurrency",
    "idle_timeout_s": "idle_timeout_s",
    "execution_mode": "execution_mode",
    "max_attempts": "max_attempts",
}
_JSON = {"metadata", "tags"}


def created(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    tx.execute(
        f"INSERT INTO {QUEUES} (id, code, priority, status, state, is_default, uri, description, metadata,"
        " tags, max_concurrency, idle_timeout_s, execution_mode, max_attempts, parent_id, created, modified,"
        ' "user", modifier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        (
            r.aggregate_id,
            d["code"],
            d["priority"],
            d["status"],
            "ACTIVE",
            bool(d["default"]),
            d["uri"],
            d["description"],
            as_json(d["metadata"]),
            as_json(d["tags"]),
            d["max_concurrency"],
            d["idle_timeout_s"],
            d["execution_mode"],
            d["max_attempts"],
            d["parent_id"],
            r.timestamp,
            r.timestamp,
            r.actor,
            r.actor,
        ),
    )
    batch.queues.add(r.aggregate_id)


def _set(tx: Tx, r: Record, batch: Batch, values: dict[str, object]) -> None:
    """Set columns and record who changed the queue, and when."""
    assignments = "".join(f"{column} = ?, " for column in values)
    tx.execute(
        f"UPDATE {QUEUES} SET {assignments}modified = ?, modifier = ? WHERE id = ?",
        (*values.values(), r.timestamp, r.actor, r.aggregate_id),
    )
    batch.queues.add(r.aggregate_id)


def updated(tx: Tx, r: Record, batch: Batch) -> None:
    changes = r.data["changes"]
    values = {
        _COLUMNS[name]: as_json(value) if name in _JSON else value
        for name, value in changes.items()
        if name in _COLUMNS
    }
    _set(tx, r, batch, values)


def tags_added(tx: Tx, r: Record, batch: Batch) -> None:
    _set(tx, r, batch, {"tags": as_json({**_tags(tx, r.aggregate_id), **r.data["tags"]})})


def tags_removed(tx: Tx, r: Record, batch: Batch) -> None:
    keys = set(r.data["keys"])
    kept = {k: v for k, v in _tags(tx, r.aggregate_id).items() if k not in keys}
    _set(tx, r, batch, {"tags": as_json(kept)})


def _tags(tx: Tx, queue_id: str) -> dict[str, str]:
    row = tx.one(f"SELECT tags FROM {QUEUES} WHERE id = ?", (queue_id,))
    return json.loads(row["tags"]) if row else {}


HANDLERS: dict[str, Handler] = {
    "Queue.Created": created,
    "Queue.Updated": updated,
    "Queue.DefaultSet": lambda tx, r, b: _set(tx, r, b, {"is_default": True}),
    "Queue.DefaultUnset": lambda tx, r, b: _set(tx, r, b, {"is_default": False}),
    "Queue.Sealed": lambda tx, r, b: _set(tx, r, b, {"state": "SEALED"}),
    "Queue.Unsealed": lambda tx, r, b: _set(tx, r, b, {"state": "ACTIVE"}),
    "Queue.Terminated": lambda tx, r, b: _set(tx, r, b, {}),
    "Queue.Deleted": lambda tx, r, b: _set(tx, r, b, {"deleted": True, "is_default": False}),
    "Queue.TagsAdded": tags_added,
    "Queue.TagsRemoved": tags_removed,
}
