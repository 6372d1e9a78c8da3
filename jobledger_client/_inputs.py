"""Python arguments as GraphQL inputs: snake_case keys in camelCase, statuses in upper case,
tasks as TaskInput, sort directives in every shape users bring; `UNSET` for "left out"."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from jobledger_client.errors import Validation
from jobledger_client.models import camel


class _Unset:
    """`UNSET`: an argument left out (as opposed to None, which sends null)."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = _Unset()

_ENUM_KEYS = frozenset({"status", "executionMode", "phase", "order"})


def enum_value(value: Any) -> Any:
    """An enum value as the schema spells it: "paused", Status.PAUSED -> "PAUSED"."""
    if isinstance(value, str):
        return value.strip().upper()
    name = getattr(value, "value", None) or getattr(value, "name", None)
    return str(name).upper() if name is not None else value


def to_input(data: Mapping[str, Any] | None, *, skip_unset: bool = True) -> dict[str, Any]:
    """A dict of accsyn-style fields as a GraphQL input: snake_case keys in camelCase,
    lower-case statuses in upper case, tasks as TaskInput. UNSET values are left out."""
    out: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if skip_unset and value is UNSET:
            continue
        name = camel(str(key))
        if name in _ENUM_KEYS and value is not None:
            value = enum_value(value)
        elif name == "tasks" and value is not None:
            value = [task_input(t) for t in value]
        out[name] = value
    return out


def task_input(task: Any) -> dict[str, Any]:
    """A task to add: a path, or a dict with source (and destination, size, priority, metadata)."""
    if isinstance(task, Mapping):
        return to_input(task)
    return {"source": task}


def task_update(update: Mapping[str, Any]) -> dict[str, Any]:
    """A task change: {"id": ..., "status": "excluded", "priority": ..., "metadata": ...}."""
    if "id" not in update:
        raise Validation.of("tasks", "each task change needs the task's id")
    return to_input(update)


def settable(settings: type, values: Mapping[str, Any], verb: str) -> dict[str, Any]:
    """`values`, each a key of the TypedDict `settings`: a TypeError names any other, as
    Python does for an unknown keyword argument."""
    for name in values:
        if name not in settings.__annotations__:
            raise TypeError(f"{verb}() got an unexpected keyword argument {name!r}")
    return dict(values)


def given(**values: Any) -> dict[str, Any]:
    """The values that were given (not None, not UNSET)."""
    return {k: v for k, v in values.items() if v is not None and v is not UNSET}


def looks_like_id(value: Any) -> bool:
    """Ids are UUIDs; anything else is taken for a code."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def quoted(value: Any) -> str:
    """A value for the `where` language, double-quoted with \\ and \" escaped."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def sort_directives(spec: Any) -> list[dict[str, str]] | None:
    """Sorting in any of the shapes users bring, as [SortDirective]:

    "created", "-created" (descending), "created desc", "+code";
    ("created", "DESC"); {"field": "created", "order": "DESC"};
    Anyscale's {"sort_field": "CREATED_AT", "sort_order": "DESC"} or objects with
    sort_field / sort_order; or a list of any of these (first sorts first)."""
    if spec is None:
        return None
    items = [spec] if isinstance(spec, str | Mapping | tuple) or hasattr(spec, "sort_field") else list(spec)
    out: list[dict[str, str]] = []
    for item in items:
        if isinstance(item, str):
            text = item.strip()
            parts = text.split()
            order = "ASC"
            if len(parts) == 2 and parts[1].upper() in ("ASC", "DESC"):
                text, order = parts[0], parts[1].upper()
            if text.startswith("-"):
                text, order = text[1:], "DESC"
            elif text.startswith("+"):
                text = text[1:]
            field: Any = text
        elif isinstance(item, tuple) and len(item) == 2:
            field, order = item
        elif isinstance(item, Mapping):
            field = item.get("field", item.get("sort_field"))
            order = item.get("order", item.get("sort_order")) or "ASC"
        elif hasattr(item, "sort_field"):
            field, order = item.sort_field, getattr(item, "sort_order", None) or "ASC"
        else:
            raise Validation.of("orderBy", f"cannot read a sort directive from {item!r}")
        field = getattr(field, "value", field)
        order = str(enum_value(order))
        if not field or not isinstance(field, str):
            raise Validation.of("orderBy", f"a sort directive needs a field name, not {field!r}")
        if order not in ("ASC", "DESC"):
            raise Validation.of("orderBy", f"sort order is ASC or DESC, not {order!r}")
        out.append({"field": field, "order": order})
    return out
