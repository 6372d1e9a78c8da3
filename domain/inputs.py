"""Checks and normalises what callers submit for jobs and tasks, before anything is written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from domain.errors import ValidationError
from domain.limits import MAX_BYTES, MAX_JOB_CODE, MAX_TASKS_PER_CALL
from domain.rules import check_json_object, check_priority, check_string, shown
from domain.task import DEFAULT_TASK_PRIORITY, location_path, normalise_location


@dataclass(frozen=True)
class TaskSpec:
    source: str | dict[str, Any]
    destination: str | dict[str, Any] | None
    size: int
    priority: int
    metadata: dict[str, Any]


def task_specs(field: str, tasks: object) -> list[TaskSpec]:
    """Validate a list of task inputs: each a path string or a TaskInput-shaped dict."""
    if tasks is None:
        return []
    if not isinstance(tasks, list):
        raise ValidationError(field, "must be a list of tasks")
    if len(tasks) > MAX_TASKS_PER_CALL:
        raise ValidationError(
            field, f"at most {MAX_TASKS_PER_CALL} tasks per call (got {len(tasks)}); send the rest in another"
        )
    return [task_spec(f"{field}[{i}]", t) for i, t in enumerate(tasks)]


def task_spec(field: str, value: object) -> TaskSpec:
    if isinstance(value, str):
        value = {"source": value}
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a path or an object with a 'source'")
    unknown = set(value) - {"source", "destination", "size", "priority", "metadata"}
    if unknown:
        raise ValidationError(field, f"unknown field(s): {shown(', '.join(sorted(map(str, unknown))))}")
    source = normalise_location(f"{field}.source", value.get("source"), optional=False)
    assert source is not None
    destination = normalise_location(f"{field}.destination", value.get("destination"), optional=True)
    size = value.get("size")
    if size is None:
        size = -1
    elif isinstance(size, bool) or not isinstance(size, int) or not -1 <= size <= MAX_BYTES:
        raise ValidationError(f"{field}.size", f"must be a number of bytes (0 to {MAX_BYTES}), or null if unknown")
    priority = value.get("priority")
    priority = DEFAULT_TASK_PRIORITY if priority is None else check_priority(f"{field}.priority", priority)
    assert priority is not None
    metadata = check_json_object(f"{field}.metadata", value.get("metadata"))
    return TaskSpec(source, destination, size, priority, metadata)


def job_code(code: object, source: str | None, specs: list[TaskSpec]) -> str:
    """The given code, or the file name of the first task's source (or of the job's source)."""
    if code is not None:
        if not isinstance(code, str) or not code.strip():
            raise ValidationError("code", "must be a non-empty string, or left out to derive it")
        return check_string("code", code, MAX_JOB_CODE)
    path = location_path(specs[0].source) if specs else source
    name = file_name(path) if path else ""
    if not name:
        raise ValidationError("code", "give a code, or at least one task (or a source) to name the job after")
    return name[:MAX_JOB_CODE]


def file_name(path: str) -> str:
    """`share=projects/film/edit.mov` -> `edit.mov`; `C:\\x\\y.mov` -> `y.mov`."""
    trimmed = path.strip().rstrip("/\\")
    return re.split(r"[/\\=:]", trimmed)[-1] if trimmed else ""
