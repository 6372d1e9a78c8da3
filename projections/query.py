"""Async reads of the read models: filters in the `where` language, sorting, keyset pages.

Every value reaches the database as a bound parameter. Pages are keyset based:
the cursor holds the sort values and id of the last row, so a page never skips
or repeats a row when rows are added in front of it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.access import ADMINS_GROUP
from domain.catalogue import QUEUE, Catalogue
from domain.errors import ValidationError
from domain.job import JobPhase, JobStatus
from domain.limits import MAX_PAGE
from domain.queue import QueueState
from domain.rules import check_storable
from domain.task import TaskStatus
from projections.claims import ClaimCandidates, owned_by
from projections.schema import GROUPS, JOBS, QUEUES, TASKS, nullable
from projections.stores import ReadStore, Row
from projections.where import QMARK, Field, Kind, compile_where


def _enum(sql: str, enum: Any) -> Field:
    return Field(sql, "enum", tuple(m.value for m in enum))


def _filterable(alias: str, catalogue: Catalogue) -> dict[str, Field]:
    """The where-language fields of a catalogue's fields, by GraphQL name (JSON documents
    cannot be filtered on)."""
    kinds: dict[type, Kind] = {int: "int", str: "text", bool: "bool", float: "float"}
    return {
        f.graphql_name: _enum(f"{alias}.{f.column}", f.type)
        if f.is_enum
        else Field(f"{alias}.{f.column}", kinds[f.type])
        for f in catalogue
        if f.type in kinds or f.is_enum
    }


QUEUE_FIELDS: dict[str, Field] = {
    "id": Field("q.id", "id"),
    **_filterable("q", QUEUE),
    "state": _enum("q.state", QueueState),
    "uri": Field("q.uri", "text"),
    "totalJobs": Field("q.total_jobs", "int"),
    "successfulJobs": Field("q.successful_jobs", "int"),
    "failedJobs": Field("q.failed_jobs", "int"),
    "activeJobs": Field("q.active_jobs", "int"),
    "created": Field("q.created", "datetime"),
    "modified": Field("q.modified", "datetime"),
    "user": Field('q."user"', "text"),
    "modifier": Field("q.modifier", "text"),
}
JOB_FIELDS: dict[str, Field] = {
    "id": Field("j.id", "id"),
    "code": Field("j.code", "text"),
    "uri": Field(f"(SELECT uri FROM {QUEUES} WHERE {QUEUES}.id = j.queue_id)", "text"),
    "status": _enum("j.status", JobStatus),
    "phase": _enum("j.phase", JobPhase),
    "priority": Field("j.priority", "int"),
    "source": Field("j.source", "text"),
    "destination": Field("j.destination", "text"),
    "progress": Field("j.progress", "int"),
    "size": Field("j.size", "int"),
    "speed": Field("j.speed", "float"),
    "etr": Field("j.etr", "text"),
    "maxAttempts": Field("j.max_attempts", "int"),
    "created": Field("j.created", "datetime"),
    "modified": Field("j.modified", "datetime"),
    "finished": Field("j.finished", "datetime"),
    "user": Field('j."user"', "text"),
    "modifier": Field("j.modifier", "text"),
    "queue.id": Field("j.queue_id", "id"),
    "queue.code": Field(f"(SELECT code FROM {QUEUES} WHERE {QUEUES}.id = j.queue_id)", "text"),
}
TASK_FIELDS: dict[str, Field] = {
    "id": Field("t.id", "id"),
    "uri": Field("t.seq", "int"),
    "status": _enum("t.status", TaskStatus),
    "priority": Field("t.priority", "int"),
    "source": Field("t.source_path", "text"),
    "destination": Field("t.destination_path", "text"),
    "size": Field("t.size", "int"),
    "progress": Field("t.progress", "int"),
    "attempts": Field("t.attempts", "int"),
    "worker": Field("t.worker", "text"),
    "error": Field("t.error", "text"),
    "created": Field("t.created", "datetime"),
    "finished": Field("t.finished", "datetime"),
    "time": Field("t.time", "int"),
    "job.id": Field("t.job_id", "id"),
}
# Sort names users bring from Anyscale's sorting directives.
_SORT_ALIASES = {
    "createdat": "created",
    "name": "code",
    "creatorid": "user",
    "creatoremail": "user",
    "queuestate": "state",
}
# Columns that may be NULL: only these need COALESCE in sort keys (a bare column can
# use its index for the order; a wrapped one cannot).
_NULLABLE = frozenset(
    f"{alias}.{column}" for alias, table in (("q", QUEUES), ("j", JOBS), ("t", TASKS)) for column in nullable(table)
)
_NULL_LOW = {"text": "''", "id": "''", "enum": "''", "int": "-1", "float": "-1", "bool": "FALSE"}


@dataclass(frozen=True)
class Sort:
    field: str
    descending: bool = False


@dataclass
class Page:
    nodes: list[Row]
    has_next_page: bool
    end_cursor: str | None
    total_count: int = 0


def check_first(first: int) -> int:
    if first < 0 or first > MAX_PAGE:
        raise ValidationError("first", f"a page holds 0 to {MAX_PAGE} items; ask for the rest with `after`")
    return first


def resolve_sort(fields: Mapping[str, Field], sorts: Sequence[Sort] | None) -> list[tuple[str, Field, bool]]:
    """(name, field, descending) for each directive, plus id as the tie-breaker."""
    by_key = {name.lower().replace("_", ""): name for name in fields}
    chosen: list[tuple[str, Field, bool]] = []
    for sort in sorts or ():
        key = sort.field.lower().replace("_", "")
        name = by_key.get(_SORT_ALIASES.get(key, key))
        if name is None:
            known = ", ".join(sorted(fields))
            raise ValidationError("orderBy", f"cannot sort by {sort.field!r}; fields are: {known}")
        chosen.append((name, fields[name], sort.descending))
    if not any(name == "id" for name, _, _ in chosen):
        chosen.append(("id", fields["id"], chosen[-1][2] if chosen else False))
    return chosen


class _Storable:
    """A read store that refuses, as VALIDATION, parameters no stored value can equal
    (text with NUL or an unpaired surrogate): PostgreSQL and SQLite would fail on them
    with a driver error, which callers would see as an internal error."""

    def __init__(self, store: ReadStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        for value in params:
            if isinstance(value, str):
                check_storable("argument", value)
        return await self._store.fetch(sql, params)


class ReadModels(ClaimCandidates):
    """The query side the API reads from (claim candidates: `projections.claims`)."""

    def __init__(self, store: ReadStore) -> None:
        self.store: ReadStore = _Storable(store)  # type: ignore[assignment]

    # -- single rows -----------------------------------------------------------

    async def queue(self, id: str | None = None, code: str | None = None) -> Row | None:
        if id is None and code is None:
            raise ValidationError("queue", "give an id or a code")
        column, value = ("id", id) if id is not None else ("code", code)
        rows = await self.store.fetch(
            f"SELECT * FROM {QUEUES} q WHERE q.{column} = ? AND q.deleted = ?", (value, False)
        )
        return _queue(rows[0]) if rows else None

    async def queues_by_id(self, ids: Sequence[str]) -> dict[str, Row]:
        """Queues by id, deleted ones included (a finished job keeps its deleted queue)."""
        rows = await self._by_ids(f"SELECT * FROM {QUEUES} q WHERE q.id IN", ids)
        return {r["id"]: _queue(r) for r in rows}

    async def job(self, id: str) -> Row | None:
        rows = await self.store.fetch(f"SELECT * FROM {JOBS} j WHERE j.id = ?", (id,))
        return rows[0] if rows else None

    async def jobs_by_id(self, ids: Sequence[str]) -> dict[str, Row]:
        rows = await self._by_ids(f"SELECT * FROM {JOBS} j WHERE j.id IN", ids)
        return {r["id"]: r for r in rows}

    async def task(self, id: str) -> Row | None:
        rows = await self.store.fetch(f"SELECT * FROM {TASKS} t WHERE t.id = ?", (id,))
        return rows[0] if rows else None

    async def tasks_by_id(self, ids: Sequence[str]) -> dict[str, Row]:
        rows = await self._by_ids(f"SELECT * FROM {TASKS} t WHERE t.id IN", ids)
        return {r["id"]: r for r in rows}

    async def owners(self, aggregate_ids: Sequence[str]) -> dict[str, str]:
        """The group owning each queue, job and task among `aggregate_ids` (through its
        queue); ids of anything else, or not in the read models yet, are left out."""
        unique = list(dict.fromkeys(aggregate_ids))
        found: dict[str, str] = {}
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            rows = await self.store.fetch(
                f"SELECT q.id, q.owner FROM {QUEUES} q WHERE q.id IN ({marks})"
                f" UNION ALL SELECT j.id, q.owner FROM {JOBS} j JOIN {QUEUES} q ON q.id = j.queue_id"
                f" WHERE j.id IN ({marks})"
                f" UNION ALL SELECT t.id, q.owner FROM {TASKS} t JOIN {JOBS} j ON j.id = t.job_id"
                f" JOIN {QUEUES} q ON q.id = j.queue_id WHERE t.id IN ({marks})",
                [*chunk, *chunk, *chunk],
            )
            found.update({r["id"]: r["owner"] for r in rows})
        return found

    async def commands_allowed(self, codes: Sequence[str]) -> dict[str, bool]:
        """Whether each group's queues may hold command tasks (the admins' group: yes,
        until a site admin says otherwise)."""
        rows = await self._by_ids(f"SELECT code AS id, allow_commands FROM {GROUPS} WHERE code IN", codes)
        found = {code: code == ADMINS_GROUP for code in codes}
        found.update({r["id"]: bool(r["allow_commands"]) for r in rows})
        return found

    async def _by_ids(self, prefix: str, ids: Sequence[str]) -> list[Row]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        return await self.store.fetch(f"{prefix} ({', '.join('?' * len(unique))})", unique)

    # -- lists -----------------------------------------------------------------

    async def queues(
        self,
        where: str | None = None,
        include_archived: bool = False,
        order_by: Sequence[Sort] | None = None,
        first: int = 50,
        after: str | None = None,
        with_total: bool = True,
        groups: Collection[str] | None = None,
    ) -> Page:
        """A page of queues; of `groups` only, when given (None: every group's)."""
        filters, params = ["q.deleted = ?"], [False]
        if groups is not None:
            owned, owners = owned_by("q.owner", groups)
            filters.append(owned)
            params += owners
        if not include_archived:
            filters.append("q.state = ?")
            params.append("ACTIVE")  # type: ignore[arg-type]
        page = await self._page(f"{QUEUES} q", QUEUE_FIELDS, where, filters, params, order_by, first, after, with_total)
        page.nodes = [_queue(r) for r in page.nodes]
        return page

    async def jobs(
        self,
        where: str | None = None,
        phase: str | None = "ACTIVE",
        queue: str | None = None,
        order_by: Sequence[Sort] | None = None,
        first: int = 50,
        after: str | None = None,
        statuses: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        with_total: bool = True,
        groups: Collection[str] | None = None,
    ) -> Page:
        """A page of jobs; of the queues of `groups` only, when given (None: every group's)."""
        filters: list[str] = []
        params: list[Any] = []
        if groups is not None:
            owned, owners = owned_by("owner", groups)
            filters.append(f"j.queue_id IN (SELECT id FROM {QUEUES} WHERE {owned})")
            params += owners
        if ids is not None:
            filters.append(f"j.id IN ({', '.join('?' * len(ids)) or 'NULL'})")
            params += list(ids)
        if phase is not None:
            filters.append("j.phase = ?")
            params.append(str(phase))
        if queue is not None:
            filters.append(f"j.queue_id IN (SELECT id FROM {QUEUES} WHERE code = ? OR id = ?)")
            params += [queue, queue]
        if statuses:
            filters.append(f"j.status IN ({', '.join('?' * len(statuses))})")
            params += [str(s) for s in statuses]
        return await self._page(f"{JOBS} j", JOB_FIELDS, where, filters, params, order_by, first, after, with_total)

    async def tasks(
        self,
        job_id: str,
        where: str | None = None,
        first: int = 100,
        after: str | None = None,
        statuses: Sequence[str] | None = None,
        with_total: bool = True,
    ) -> Page:
        filters, params = ["t.job_id = ?"], [job_id]
        if statuses:
            filters.append(f"t.status IN ({', '.join('?' * len(statuses))})")
            params += [str(s) for s in statuses]
        return await self._page(
            f"{TASKS} t", TASK_FIELDS, where, filters, params, [Sort("uri")], first, after, with_total
        )

    async def tasks_for_jobs(
        self, job_ids: Sequence[str], statuses: Sequence[str] | None, first: int
    ) -> dict[str, Page]:
        """The first page of tasks of many jobs in two queries (rows and totals), for DataLoaders."""
        check_first(first)
        unique = list(dict.fromkeys(job_ids))
        marks = ", ".join("?" * len(unique))
        condition, params = f"t.job_id IN ({marks})", list(unique)
        if statuses:
            condition += f" AND t.status IN ({', '.join('?' * len(statuses))})"
            params += [str(s) for s in statuses]
        rows = await self.store.fetch(
            f"SELECT * FROM (SELECT t.*, ROW_NUMBER() OVER (PARTITION BY t.job_id ORDER BY t.seq) AS _rn"
            f" FROM {TASKS} t WHERE {condition}) ranked WHERE _rn <= ? ORDER BY job_id, seq",
            [*params, first + 1],
        )
        totals = await self.store.fetch(
            f"SELECT t.job_id, COUNT(*) AS n FROM {TASKS} t WHERE {condition} GROUP BY t.job_id", params
        )
        counts = {r["job_id"]: int(r["n"]) for r in totals}
        grouped: dict[str, list[Row]] = {job_id: [] for job_id in unique}
        for row in rows:
            row.pop("_rn", None)
            grouped[row["job_id"]].append(row)
        pages = {}
        for job_id, found in grouped.items():
            shown = found[:first]
            cursor = encode_cursor([shown[-1]["seq"], shown[-1]["id"]]) if shown else None
            pages[job_id] = Page(shown, len(found) > first, cursor, counts.get(job_id, 0))
        return pages

    async def _page(
        self,
        table: str,
        fields: Mapping[str, Field],
        where: str | None,
        filters: list[str],
        params: list[Any],
        order_by: Sequence[Sort] | None,
        first: int,
        after: str | None,
        with_total: bool = True,
    ) -> Page:
        """One page; `with_total=False` skips the COUNT (costly on big tables) when
        the caller does not show totalCount."""
        check_first(first)
        filters, params = list(filters), list(params)
        if where and where.strip():
            sql, values = compile_where(where, fields, QMARK)
            filters.append(f"({sql})")
            params += values
        sort = resolve_sort(fields, order_by)
        keys = [_sort_key(f) for _, f, _ in sort]
        condition = " AND ".join(filters) or "1=1"
        total = (
            await self.store.fetch(f"SELECT COUNT(*) AS n FROM {table} WHERE {condition}", params)
            if with_total
            else [{"n": -1}]
        )
        page_filters, page_params = list(filters), list(params)
        if after:
            sql, values = _after(keys, sort, decode_cursor(after, len(keys)), self.store.backend)
            page_filters.append(sql)
            page_params += values
        order = ", ".join(f"{k} {'DESC' if desc else 'ASC'}" for k, (_, _, desc) in zip(keys, sort, strict=True))
        selected = ", ".join(f"{k} AS _k{i}" for i, k in enumerate(keys))
        rows = await self.store.fetch(
            f"SELECT *, {selected} FROM {table} WHERE {' AND '.join(page_filters) or '1=1'}"
            f" ORDER BY {order} LIMIT {first + 1}",
            page_params,
        )
        has_next = len(rows) > first
        rows = rows[:first]
        cursor = encode_cursor([rows[-1][f"_k{i}"] for i in range(len(keys))]) if rows else None
        for row in rows:
            for i in range(len(keys)):
                row.pop(f"_k{i}", None)
        return Page(rows, has_next, cursor, int(total[0]["n"]))


def _sort_key(f: Field) -> str:
    """A bare column where it cannot be NULL; NULLs as the lowest value otherwise
    (timestamps stay bare: `_after` compares them NULL-aware)."""
    nullable = f.sql in _NULLABLE or f.sql.startswith("(SELECT")
    if f.kind == "datetime" or not nullable:
        return f.sql
    return f"COALESCE({f.sql}, {_NULL_LOW.get(f.kind, 'NULL')})"


def _after(
    keys: list[str], sort: list[tuple[str, Field, bool]], values: list[Any], backend: str
) -> tuple[str, list[Any]]:
    """Rows strictly after the cursor in the sort order: (a > x) OR (a = x AND b > y) OR ...

    Timestamps may be NULL (finished): NULL sorts first ascending in SQLite and
    last in PostgreSQL, so they are compared with NULL-aware helpers."""
    clauses, params = [], []
    for i in range(len(keys)):
        parts = []
        for j in range(i):
            parts.append(_equal(keys[j], sort[j][1], values[j]))
        parts.append(_beyond(keys[i], sort[i][1], values[i], sort[i][2], backend))
        sqls = [p[0] for p in parts]
        for p in parts:
            params += p[1]
        clauses.append("(" + " AND ".join(sqls) + ")")
    return "(" + " OR ".join(clauses) + ")", params


def _equal(key: str, f: Field, value: Any) -> tuple[str, list[Any]]:
    if value is None:
        return f"{key} IS NULL", []
    return f"{key} = ?", [_typed(f, value)]


def _beyond(key: str, f: Field, value: Any, descending: bool, backend: str) -> tuple[str, list[Any]]:
    op = "<" if descending else ">"
    nulls_first = backend == "sqlite"  # in ascending order; reversed when descending
    nulls_before = nulls_first != descending
    if value is None:
        return ("1=0", []) if not nulls_before else (f"{key} IS NOT NULL", [])
    tail = f" OR {key} IS NULL" if not nulls_before else ""
    return f"({key} {op} ?{tail})", [_typed(f, value)]


def _typed(f: Field, value: Any) -> Any:
    if f.kind == "datetime" and isinstance(value, str):
        return datetime.fromisoformat(value)
    return value


def encode_cursor(values: list[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode()


def decode_cursor(cursor: str, length: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        values = None
    if not isinstance(values, list) or len(values) != length:
        raise ValidationError("after", "is not a cursor from this list; use pageInfo.endCursor of the previous page")
    return values


def _queue(row: Row) -> Row:
    row["is_default"] = bool(row["is_default"])
    row["deleted"] = bool(row["deleted"])
    return row
