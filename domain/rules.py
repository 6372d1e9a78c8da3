"""Small named checks on input values, shared by the aggregates and the commands."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any, TypeVar

from domain.errors import ValidationError

CODE_PATTERN = re.compile(r"^[a-z0-9_-]+$")
MAX_CODE_LENGTH = 100
MIN_PRIORITY, MAX_PRIORITY = 0, 1000

E = TypeVar("E", bound=StrEnum)


class Unset:
    """Marks an argument that was not given, as opposed to one given as None."""

    _instance: Unset | None = None

    def __new__(cls) -> Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Any = Unset()


def check_code(field: str, code: object) -> str:
    if not isinstance(code, str) or not code:
        raise ValidationError(field, "must be a non-empty string")
    if len(code) > MAX_CODE_LENGTH:
        raise ValidationError(field, f"must be at most {MAX_CODE_LENGTH} characters")
    if not CODE_PATTERN.match(code):
        raise ValidationError(field, f"{code!r} may contain only lowercase letters, digits, '_' and '-'")
    return code


def check_priority(field: str, priority: object, *, optional: bool = False) -> int | None:
    if priority is None and optional:
        return None
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(field, f"must be an integer from {MIN_PRIORITY} to {MAX_PRIORITY}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValidationError(field, f"{priority} is outside {MIN_PRIORITY} (lowest) .. {MAX_PRIORITY} (highest)")
    return priority


def check_positive(field: str, value: object, *, allow_zero: bool = False) -> int | None:
    """An optional whole number above zero (or at least zero)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be a whole number or null")
    lowest = 0 if allow_zero else 1
    if value < lowest:
        raise ValidationError(field, f"must be at least {lowest}, or null for none")
    return value


def check_json_object(field: str, value: object) -> dict[str, Any]:
    """A JSON object (dict with string keys that survives a JSON round trip)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    try:
        return dict(json.loads(json.dumps(value)))
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"must be plain JSON: {exc}") from None


def check_tags(field: str, tags: object) -> dict[str, str]:
    checked = check_json_object(field, tags)
    for key, val in checked.items():
        if not key.strip():
            raise ValidationError(field, "tag keys must be non-empty")
        if not isinstance(val, str):
            raise ValidationError(field, f"tag {key!r} must have a string value")
    return checked


def check_text(field: str, value: object, *, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    return value


def check_enum(field: str, enum: type[E], value: object) -> E:
    """Accept an enum member or its name in any case."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        try:
            return enum(value.upper())
        except ValueError:
            pass
    choices = ", ".join(m.value for m in enum)
    raise ValidationError(field, f"{value!r} is not one of {choices}")
