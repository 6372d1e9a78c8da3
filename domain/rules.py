"""Small named checks on input values, shared by the aggregates and the commands.

Every string and JSON document a caller sends passes one of these on its way in, so
what no store can hold (NUL, unpaired surrogates, NaN) or what exceeds a limit in
`domain.limits` is refused with the field's name, before anything is written.
"""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import Any, TypeVar

from domain.errors import ValidationError
from domain.limits import (
    MAX_BYTES,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_PRIORITY,
    MAX_QUEUE_CODE,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MIN_PRIORITY,
)

DEFAULT_PRIORITY = 500  # a queue's, and a task's, unless given: the middle of MIN_PRIORITY..MAX_PRIORITY
CODE_PATTERN = re.compile(r"^[a-z0-9_-]+$")
# PostgreSQL refuses NUL in text and jsonb; neither store can encode a lone surrogate as UTF-8.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

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


def check_storable(field: str, text: str) -> str:
    """Refuse the characters no store can hold: NUL and unpaired surrogates."""
    found = UNSTORABLE.search(text)
    if found is not None:
        char = found.group()
        what = "a NUL character (U+0000)" if char == "\x00" else f"an unpaired surrogate (U+{ord(char):04X})"
        raise ValidationError(field, f"contains {what} at position {found.start()}, which cannot be stored")
    return text


def check_string(field: str, value: object, most: int, *, blank: bool = True) -> str:
    """A string of at most `most` characters that a store can hold; `blank=False`
    refuses one that is empty or only spaces."""
    if not isinstance(value, str):
        raise ValidationError(field, "must be a string")
    if len(value) > most:
        raise ValidationError(field, f"at most {most} characters (got {len(value)})")
    if not blank and not value.strip():
        raise ValidationError(field, "must not be empty")
    return check_storable(field, value)


def check_optional_string(field: str, value: object, most: int) -> str | None:
    """None, or a string as `check_string` takes it."""
    return None if value is None else check_string(field, value, most)


def check_code(field: str, code: object) -> str:
    if not isinstance(code, str) or not code:
        raise ValidationError(field, "must be a non-empty string")
    if len(code) > MAX_QUEUE_CODE:
        raise ValidationError(field, f"must be at most {MAX_QUEUE_CODE} characters (got {len(code)})")
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


def check_positive(field: str, value: object, *, most: int, allow_zero: bool = False) -> int | None:
    """An optional whole number above zero (or at least zero), and at most `most`."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, "must be a whole number or null")
    lowest = 0 if allow_zero else 1
    if value < lowest:
        raise ValidationError(field, f"must be at least {lowest}, or null for none")
    if value > most:
        raise ValidationError(field, f"must be at most {most} (got {value})")
    return value


def check_size(field: str, value: object) -> int:
    """A number of bytes from 0 to MAX_BYTES; None (or -1): unknown, kept as -1."""
    if value is None:
        return -1
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= MAX_BYTES:
        raise ValidationError(field, f"must be a number of bytes (0 to {MAX_BYTES}), or null if unknown")
    return value


def check_number(field: str, value: object, lowest: float, most: float) -> float | int:
    """A finite number from `lowest` to `most`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(field, "must be a number")
    if not math.isfinite(value) or not lowest <= value <= most:
        raise ValidationError(field, f"must be from {lowest} to {most} (got {value})")
    return value


def check_optional_number(field: str, value: object, lowest: float, most: float) -> float | None:
    """None (not set: inherited or the default), or a finite number from `lowest` to
    `most`, kept as a float (a retry policy's seconds, factor and share)."""
    if value is None:
        return None
    return float(check_number(field, value, lowest, most))


def check_json(field: str, value: object, *, most_bytes: int = MAX_JSON_BYTES) -> Any:
    """Any JSON value (object, array, string, number, true, false, null) that both stores
    can hold: at most `most_bytes` as compact UTF-8 JSON and MAX_JSON_DEPTH levels deep,
    no NaN or Infinity, no NUL or unpaired surrogate in a key or a string. Returns a
    plain copy (tuples become lists, keys strings)."""
    _check_tree(field, field, value, 1)
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError(field, f"must be plain JSON: {exc}") from None
    size = len(text.encode())
    if size > most_bytes:
        raise ValidationError(field, f"at most {most_bytes} bytes of JSON (got {size})")
    return json.loads(text)


def check_json_object(field: str, value: object) -> dict[str, Any]:
    """A JSON object (None: an empty one), within the limits of `check_json`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(field, "must be a JSON object")
    return dict(check_json(field, value))


def _check_tree(root: str, path: str, value: object, depth: int) -> None:
    """The strings and numbers of a JSON document, each named by its path (`metadata.a[2]`)."""
    if isinstance(value, str):
        check_storable(path, value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path, f"{value} is not a JSON number (NaN and Infinity cannot be stored)")
    elif isinstance(value, dict | list | tuple):
        if depth > MAX_JSON_DEPTH:
            raise ValidationError(root, f"at most {MAX_JSON_DEPTH} levels of nested objects and arrays")
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    check_storable(path, key)
                _check_tree(root, f"{path}.{key}", item, depth + 1)
        else:
            for index, item in enumerate(value):
                _check_tree(root, f"{path}[{index}]", item, depth + 1)


def check_tags(field: str, tags: object) -> dict[str, str]:
    """Tags: at most MAX_TAGS pairs of a non-empty key and a string value."""
    checked = check_json_object(field, tags)
    if len(checked) > MAX_TAGS:
        raise ValidationError(field, f"at most {MAX_TAGS} tags (got {len(checked)})")
    for key, val in checked.items():
        if not key.strip():
            raise ValidationError(field, "tag keys must be non-empty")
        if len(key) > MAX_TAG_KEY:
            raise ValidationError(field, f"tag keys are at most {MAX_TAG_KEY} characters (got {len(key)})")
        if not isinstance(val, str):
            raise ValidationError(field, f"tag {key!r} must have a string value")
        if len(val) > MAX_TAG_VALUE:
            raise ValidationError(f"{field}.{key}", f"at most {MAX_TAG_VALUE} characters (got {len(val)})")
    return checked


def check_bool(field: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(field, "must be true or false")
    return value


def check_enum(field: str, enum: type[E], value: object) -> E:
    """Accept an enum member or its value in any case."""
    if isinstance(value, enum):
        return value
    if isinstance(value, str):
        found = {member.value.lower(): member for member in enum}.get(value.lower())
        if found is not None:
            return found
    choices = ", ".join(m.value for m in enum)
    raise ValidationError(field, f"{shown(value)} is not one of {choices}")


def shown(value: object) -> str:
    """A caller's value quoted in a message, cut short: the answer must not echo megabytes."""
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "…"
