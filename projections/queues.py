"""The queues read model: every contract field, with exact job counts."""

from __future__ import annotations

import json

from domain.access import ADMINS_GROUP
from domain.catalogue import QUEUE
from domain.history import Record
from projections.batch import Batch, Handler, as_json
from projections.schema import GROUPS, QUEUES, catalogue_row, column_names, insert, stored
from projections.stores import Tx

_INSERT = insert(
    QUEUES,
    ("id", *column_names(QUEUE), "state", "uri", "parent_id", "owner", "created", "modified", '"user"', "modifier"),
)
# What a `Queue.Updated` event may change: the updatable fields, each to its own column.
_UPDATABLE = {f.name: f for f in QUEUE.updatable}


def created(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    tx.execute(
        _INSERT,
        [
            r.aggregate_id,
            *catalogue_row(QUEUE, d),
            "ACTIVE",
            d["uri"],
            d["parent_id"],
            d.get("group") or ADMINS_GROUP,  # queues recorded before groups owned them: the admins'
            r.timestamp,
            r.timestamp,
            r.actor,
            r.actor,
        ],
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
    fields = [(_UPDATABLE[name], value) for name, value in r.data["changes"].items() if name in _UPDATABLE]
    _set(tx, r, batch, {f.column: stored(f, value) for f, value in fields})


def tags_added(tx: Tx, r: Record, batch: Batch) -> None:
    _set(tx, r, batch, {"tags": as_json({**_tags(tx, r.aggregate_id), **r.data["tags"]})})


def tags_removed(tx: Tx, r: Record, batch: Batch) -> None:
    keys = set(r.data["keys"])
    kept = {k: v for k, v in _tags(tx, r.aggregate_id).items() if k not in keys}
    _set(tx, r, batch, {"tags": as_json(kept)})


def _tags(tx: Tx, queue_id: str) -> dict[str, str]:
    row = tx.one(f"SELECT tags FROM {QUEUES} WHERE id = ?", (queue_id,))
    return json.loads(row["tags"]) if row else {}


def group_created(tx: Tx, r: Record, batch: Batch) -> None:
    d = r.data
    tx.execute(
        f"INSERT INTO {GROUPS} (id, code, description, allow_commands) VALUES (?, ?, ?, ?)",
        (r.aggregate_id, d["code"], d.get("description", ""), bool(d.get("allow_commands", False))),
    )


def group_updated(tx: Tx, r: Record, batch: Batch) -> None:
    changes = {k: v for k, v in r.data["changes"].items() if k in ("description", "allow_commands")}
    if changes:
        assignments = ", ".join(f"{column} = ?" for column in changes)
        tx.execute(f"UPDATE {GROUPS} SET {assignments} WHERE id = ?", (*changes.values(), r.aggregate_id))


HANDLERS: dict[str, Handler] = {
    "Group.Created": group_created,
    "Group.Updated": group_updated,
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
