"""One catalogue per entity: the fields a caller sets on a queue, a job or a task.

Each field says its name (snake_case; `graphql_name` is its camelCase), its type, its
default, whether it may be null, its limit and the check from `domain.rules` that a
value passes on its way in, and whether it is set at create, at update or both. The
commands check input against it (`Catalogue.new`, `Catalogue.changes`); the read models
take their columns from it (`projections.schema`); the API builds CreateQueueInput,
UpdateQueueInput and the Queue type's settable fields from it (`api.mutations`,
`api.types`). The client imports no server package: it keeps its own field lists
(`jobledger_client.models`).

Adding a field to a queue: an entry in QUEUE, and the Queue aggregate's parameter (with
a default, so that the events recorded before it still replay).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NewType

from domain.errors import ValidationError
from domain.inputs import job_code
from domain.job import JobStatus
from domain.limits import (
    MAX_ATTEMPTS,
    MAX_BYTES,
    MAX_CONCURRENCY,
    MAX_DESCRIPTION,
    MAX_IDLE_TIMEOUT_S,
    MAX_JOB_CODE,
    MAX_PATH,
    MAX_PRIORITY,
    MAX_QUEUE_CODE,
    MAX_TAGS,
    MIN_PRIORITY,
)
from domain.queue import ExecutionMode, QueueStatus
from domain.retry import DEFAULT_RETRY, MAX_RETRY_BACKOFF, MAX_RETRY_DELAY_S
from domain.rules import (
    DEFAULT_PRIORITY,
    UNSET,
    check_bool,
    check_code,
    check_enum,
    check_json_object,
    check_optional_number,
    check_optional_string,
    check_positive,
    check_priority,
    check_size,
    check_string,
    check_tags,
)
from domain.task import TaskStatus, normalise_location

__all__ = ["DEFAULT_PRIORITY", "JOB", "QUEUE", "TASK", "Catalogue", "Field", "Json", "Long"]


class Json:
    """The type of a JSON document (kept as text by the read models)."""


Long = NewType("Long", int)  # a 64-bit whole number: bytes


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()  # the default of a field that has none: it must be given
Check = Callable[[str, Any], Any]  # (the field's name in messages, the value) -> the value to keep


@dataclass(frozen=True)
class Field:
    """One field of an entity as callers set it and the read model keeps it."""

    name: str
    type: Any  # int, str, bool, Json, Long, or a StrEnum
    check: Check
    default: Any = REQUIRED
    nullable: bool = False
    limit: Any = None  # the most (or the (least, most)) `check` lets through, for the reader
    create: bool = True
    update: bool = True
    column: str = ""  # in the read model, when it differs from `name`
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.name)

    @property
    def graphql_name(self) -> str:
        """`idle_timeout_s` -> `idleTimeoutS`: the contract's name, and the one errors use."""
        head, *rest = self.name.split("_")
        return head + "".join(part[:1].upper() + part[1:] for part in rest)

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    @property
    def is_enum(self) -> bool:
        return isinstance(self.type, type) and issubclass(self.type, StrEnum)

    def fresh_default(self) -> Any:
        """The default, a copy of its own when it is a document (so no two entities share one)."""
        return copy.deepcopy(self.default)

    def checked(self, value: Any, label: str | None = None) -> Any:
        """The value as kept, or ValidationError naming `label` (default: the field's GraphQL name)."""
        return self.check(label or self.graphql_name, value)


@dataclass(frozen=True)
class Catalogue:
    """The fields of one entity, in the order the contract lists them."""

    entity: str
    fields: tuple[Field, ...]

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __getitem__(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def creatable(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.create)

    @property
    def updatable(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.update)

    def new(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Every creatable field, checked: the value given (UNSET: not given), or its default."""
        self._refuse_unknown(values, self.creatable, "set at creation")
        fields = {}
        for f in self.creatable:
            value = values.get(f.name, UNSET)
            if value is UNSET:
                if f.required:
                    raise ValidationError(f.graphql_name, "is required")
                value = f.fresh_default()
            fields[f.name] = f.checked(value)
        return fields

    def changes(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The updatable fields given (not UNSET), each checked."""
        self._refuse_unknown(values, self.updatable, "changed")
        return {name: self[name].checked(value) for name, value in values.items() if value is not UNSET}

    def _refuse_unknown(self, values: Mapping[str, Any], allowed: tuple[Field, ...], what: str) -> None:
        unknown = set(values) - {f.name for f in allowed}
        if unknown:
            names = ", ".join(sorted(map(str, unknown)))
            raise ValidationError(names, f"is not a {self.entity.lower()} field that can be {what}")


# -- the kinds of field ---------------------------------------------------------------


def _code(name: str, most: int, **options: Any) -> Field:
    return Field(name, str, check_code, limit=most, **options)


def _text(name: str, most: int, default: str = "", **options: Any) -> Field:
    return Field(name, str, lambda label, v: check_string(label, v, most), default=default, limit=most, **options)


def _path(name: str, **options: Any) -> Field:
    """A path string, or null for none."""
    check: Check = lambda label, v: check_optional_string(label, v, MAX_PATH)  # noqa: E731
    return Field(name, str, check, default=None, nullable=True, limit=MAX_PATH, **options)


def _priority(name: str, *, nullable: bool = False, **options: Any) -> Field:
    check: Check = lambda label, v: check_priority(label, v, optional=nullable)  # noqa: E731
    default = None if nullable else DEFAULT_PRIORITY
    return Field(name, int, check, default=default, nullable=nullable, limit=(MIN_PRIORITY, MAX_PRIORITY), **options)


def _choice(name: str, enum: type[StrEnum], default: Any = REQUIRED, **options: Any) -> Field:
    return Field(name, enum, lambda label, v: check_enum(label, enum, v), default=default, **options)


def _flag(name: str, default: bool = False, **options: Any) -> Field:
    return Field(name, bool, check_bool, default=default, **options)


def _document(name: str, **options: Any) -> Field:
    """A JSON object; null or left out: an empty one."""
    return Field(name, Json, check_json_object, default={}, **options)


def _count(name: str, most: int, *, zero: bool = False, **options: Any) -> Field:
    """A whole number from 1 (or 0) to `most`, or null for none."""
    check: Check = lambda label, v: check_positive(label, v, most=most, allow_zero=zero)  # noqa: E731
    return Field(name, int, check, default=None, nullable=True, limit=(0 if zero else 1, most), **options)


def _job_code(label: str, value: Any) -> str | None:
    return None if value is None else job_code(value, None, [])


def _location(name: str, *, optional: bool, **options: Any) -> Field:
    """A task's source or destination: a path, or an object with one (see `normalise_location`)."""
    check: Check = lambda label, v: normalise_location(label, v, optional=optional)  # noqa: E731
    default = None if optional else REQUIRED
    return Field(name, Json, check, default=default, nullable=optional, limit=MAX_PATH, **options)


def _retry_policy(*, of_job: bool) -> tuple[Field, ...]:
    """The parts of a retry policy (`domain.retry`), each null unless set: then a job's
    take its queue's, a queue's the default."""

    def part(name: str, lowest: float, most: float, doc: str, default: float) -> Field:
        check: Check = lambda label, v: check_optional_number(label, v, lowest, most)  # noqa: E731
        null = f"its queue's (else {default:g})" if of_job else f"{default:g}"
        return Field(name, float, check, default=None, nullable=True, limit=(lowest, most), doc=f"{doc}; null: {null}")

    d = DEFAULT_RETRY
    return (
        part("retry_delay", 0, MAX_RETRY_DELAY_S, "seconds from a failed attempt to the next (0: at once)", d.delay),
        part("retry_backoff", 1, MAX_RETRY_BACKOFF, "each further wait is this many times longer", d.backoff),
        part("retry_max_delay", 0, MAX_RETRY_DELAY_S, "seconds no wait is longer than", d.max_delay),
        part("retry_jitter", 0, 1, "share of each wait drawn at random, 0 to 1 (full jitter)", d.jitter),
    )


# -- the entities ---------------------------------------------------------------------

QUEUE = Catalogue(
    "Queue",
    (
        _code("code", MAX_QUEUE_CODE, update=False),
        _priority("priority"),
        _choice("status", QueueStatus, QueueStatus.WAITING),
        # Who is the default is the registry's to say (`QueueCommands`), not a plain setting.
        _flag("default", column="is_default"),
        _text("description", MAX_DESCRIPTION),
        _document("metadata"),
        Field("tags", Json, check_tags, default={}, limit=MAX_TAGS, update=False),
        _count("max_concurrency", MAX_CONCURRENCY),
        _count("idle_timeout_s", MAX_IDLE_TIMEOUT_S, zero=True),
        _choice("execution_mode", ExecutionMode, ExecutionMode.PRIORITY),
        _count("max_attempts", MAX_ATTEMPTS, doc="tries per task before it fails; null: 3"),
        *_retry_policy(of_job=False),
    ),
)

JOB = Catalogue(
    "Job",
    (
        # Left out (None), the job is named after its first task (`domain.inputs.job_code`).
        Field("code", str, _job_code, default=None, limit=MAX_JOB_CODE, update=False),
        # A new job starts in one of `job.CREATABLE`; changes follow `job.ALLOWED`.
        _choice("status", JobStatus, JobStatus.INIT),
        # Null: its queue's; the read model keeps the one in force beside it.
        _priority("priority", nullable=True, column="own_priority"),
        _path("source", update=False),
        _path("destination"),
        _document("metadata"),
        _count("max_attempts", MAX_ATTEMPTS, doc="tries per task before it fails; null: its queue's"),
        *_retry_policy(of_job=True),
    ),
)

TASK = Catalogue(
    "Task",
    (
        # Tasks are added as QUEUED (PENDING while they wait for a destination); callers change it.
        _choice("status", TaskStatus, TaskStatus.QUEUED, create=False),
        _priority("priority"),
        _location("source", optional=False, update=False),
        _location("destination", optional=True, update=False),
        Field("size", Long, check_size, default=-1, limit=(-1, MAX_BYTES), update=False),  # -1: unknown
        _document("metadata"),
    ),
)
