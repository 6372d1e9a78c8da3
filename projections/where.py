"""Compile a user's `where` expression into an SQL fragment with bound parameters.

The language (see the comment above `type Query` in the contract)::

    expression := or ;  or := and ("OR" and)* ;  and := not ("AND" not)*
    not        := "NOT" not | "(" or ")" | field OP value
    OP         := = | != | <> | < | <= | > | >=
    value      := bare | "double quoted, with \\" and \\\\ escapes" | null

Keywords and field names are case-insensitive; a leading ``<Entity> where`` (as in
``Job where status=aborted``) is ignored. A bare value runs up to whitespace, a
parenthesis or a quote (``code=a(b`` is an error: quote such values). NUL characters and
lone surrogates are refused anywhere, as neither can reach PostgreSQL. Values only ever
reach the database as parameters; the SQL text holds nothing but the configured
``Field.sql`` snippets, placeholders and fixed keywords.

Logic is two-valued: a comparison against a NULL column is false, and ``NOT x`` /
``!=`` / ``<>`` are true exactly when the positive comparison is not, so
``destination!=x`` also selects rows without a destination.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, NoReturn

from domain.errors import ValidationError

Kind = Literal["text", "int", "float", "enum", "datetime", "bool", "id"]
Placeholder = Callable[[int], str]

QMARK: Placeholder = lambda i: "?"  # noqa: E731 - sqlite3 style
DOLLAR: Placeholder = lambda i: f"${i}"  # noqa: E731 - asyncpg / PostgreSQL style

MAX_LENGTH = 4000
MAX_DEPTH = 10  # parentheses + NOTs; SQLite < 3.46 has a fixed parser stack of 100 entries

_FIELD = "where"
_OPERATORS = ("<=", ">=", "<>", "!=", "=", "<", ">")  # longest first
_EQUALITY = ("=", "!=", "<>")
_KEYWORDS = ("AND", "OR", "NOT")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_PREFIX = re.compile(r"\s*(?:[A-Za-z_]\w*\s+)?where(?=[\s(]|$)", re.IGNORECASE | re.ASCII)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INT64 = 2**63


@dataclass(frozen=True)
class Field:
    """A field users may name in `where`: its SQL expression and how to read values for it."""

    sql: str
    kind: Kind
    values: tuple[str, ...] = ()  # allowed values for kind="enum" (stored upper case)


def compile_where(
    expression: str | None, fields: Mapping[str, Field], placeholder: Placeholder, *, first_index: int = 1
) -> tuple[str, list[object]]:
    """Return ``(sql, params)`` for `expression`; an empty one (or None) gives ``("1=1", [])``.

    Placeholders are numbered from `first_index`. Any problem with the expression
    raises ``ValidationError("where", "column N: ...")``; nothing else is raised.
    """
    if expression is None:
        return "1=1", []
    if len(expression) > MAX_LENGTH:
        raise ValidationError(
            _FIELD, f"the expression is {len(expression)} characters long; at most {MAX_LENGTH} are allowed"
        )
    for at, char in enumerate(expression):
        if char == "\x00" or "\ud800" <= char <= "\udfff":
            raise ValidationError(_FIELD, f"column {at + 1}: invalid character U+{ord(char):04X}")
    if not expression.strip():
        return "1=1", []
    parser = _Parser(expression, fields, placeholder, first_index)
    return parser.parse(), parser.params


class _Parser:
    """Scannerless recursive-descent parser; the grammar decides how the next characters read."""

    def __init__(self, text: str, fields: Mapping[str, Field], placeholder: Placeholder, first: int) -> None:
        self.text = text
        self.fields = {name.lower(): (name, field) for name, field in fields.items()}
        self.placeholder = placeholder
        self.index = first
        self.params: list[object] = []
        self.pos = 0
        self.depth = 0

    # -- helpers ---------------------------------------------------------------------------

    def fail(self, pos: int, reason: str) -> NoReturn:
        raise ValidationError(_FIELD, f"column {pos + 1}: {reason}")

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        """The next character after whitespace, or '' at the end."""
        self.skip_space()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def found(self) -> str:
        """Describe what is at the current position, for error messages."""
        if self.pos >= len(self.text):
            return "the end of the expression"
        match = _IDENT.match(self.text, self.pos)
        return repr(match.group() if match else self.text[self.pos])

    def word(self) -> str | None:
        """Read an identifier or keyword at the current position, if there is one."""
        match = _IDENT.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def bind(self, value: object) -> str:
        self.params.append(value)
        self.index += 1
        return self.placeholder(self.index - 1)

    # -- grammar ---------------------------------------------------------------------------

    def parse(self) -> str:
        prefix = _PREFIX.match(self.text)
        if prefix is not None:  # `Job where ...`: the entity is implied by the caller
            self.pos = prefix.end()
            if self.peek() == "":
                self.fail(self.pos, "expected a condition after 'where'")
        sql = self.or_expr()
        if self.peek() == ")":
            self.fail(self.pos, "unmatched ')'")
        if self.pos < len(self.text):
            self.fail(self.pos, f"expected AND, OR or the end of the expression, found {self.found()}")
        return sql

    def keyword(self, name: str) -> bool:
        """Consume keyword `name` (any case) if it comes next as a whole word."""
        self.peek()
        match = _IDENT.match(self.text, self.pos)
        if match is None or match.group().upper() != name:
            return False
        self.pos = match.end()
        return True

    def or_expr(self) -> str:
        parts = [self.and_expr()]
        while self.keyword("OR"):
            parts.append(self.and_expr("'OR'"))
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def and_expr(self, after: str = "") -> str:
        parts = [self.not_expr(after)]
        while self.keyword("AND"):
            parts.append(self.not_expr("'AND'"))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def not_expr(self, after: str = "") -> str:
        """NOT, a parenthesised expression or a comparison; `after` names what came before."""
        self.peek()
        start = self.pos
        match = _IDENT.match(self.text, self.pos)
        # `NOT` is the keyword unless an operator follows it (then it is a misused field name).
        if match and match.group().upper() == "NOT" and not self._operator_at(match.end()):
            self.pos = match.end()
            return f"({self.nested(start, 'NOT')} IS NOT TRUE)"
        if self.peek() == "(":
            opened = self.pos
            self.pos += 1
            inner = self.nested(opened, "(")
            if self.peek() != ")":
                found = self.found()
                self.fail(
                    self.pos,
                    f"expected AND, OR or ')' to close the '(' at column {opened + 1}, found {found}",
                )
            self.pos += 1
            return inner
        return self.comparison(after)

    def _operator_at(self, pos: int) -> bool:
        while pos < len(self.text) and self.text[pos].isspace():
            pos += 1
        return self.text.startswith(_OPERATORS, pos)

    def nested(self, start: int, what: str) -> str:
        """Parse what follows NOT or '(' one level deeper, refusing too deep nesting."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(start, f"the expression nests deeper than {MAX_DEPTH} levels")
        if self.peek() in ("", ")"):
            self.fail(self.pos, f"expected a condition after '{what}', found {self.found()}")
        sql = self.or_expr() if what == "(" else self.not_expr(f"'{what}'")
        self.depth -= 1
        return sql

    def comparison(self, after: str) -> str:
        """`field OP value`."""
        self.skip_space()
        start = self.pos
        name = self.word()
        if name is None:
            context = f" after {after}" if after else ""
            self.fail(start, f"expected a condition (field OP value){context}, found {self.found()}")
        if name.upper() in _KEYWORDS:
            self.fail(start, f"expected a condition, found the keyword '{name.upper()}'")
        entry = self.fields.get(name.lower())
        if entry is None:
            known = ", ".join(sorted(self.fields[key][0] for key in self.fields))
            self.fail(start, f"unknown field '{name}'; fields are: {known}")
        label, field = entry
        self.skip_space()
        operator = next((op for op in _OPERATORS if self.text.startswith(op, self.pos)), None)
        operator_at = self.pos
        if operator is None:
            found = self.found()
            self.fail(self.pos, f"expected an operator (= != <> < <= > >=) after '{name}', found {found}")
        self.pos += len(operator)
        value_at, value, quoted = self.value(operator)
        if not quoted and value.upper() == "NULL":
            if operator not in _EQUALITY:
                self.fail(value_at, f"null can only be compared with =, != or <>, not '{operator}'")
            return f"({field.sql} IS {'' if operator == '=' else 'NOT '}NULL)"
        if field.kind in ("enum", "bool") and operator not in _EQUALITY:
            self.fail(operator_at, f"'{label}' can only be compared with =, != or <>, not '{operator}'")
        param = self.bind(_convert(self, label, field, value, value_at))
        if operator == "=" or operator not in _EQUALITY:
            return f"({field.sql} {operator} {param})"
        return f"(({field.sql} = {param}) IS NOT TRUE)"

    def value(self, operator: str) -> tuple[int, str, bool]:
        """Read the value after `operator`: (position, text, whether it was quoted)."""
        char = self.peek()
        start = self.pos
        if char in ("", ")"):
            self.fail(start, f"expected a value after '{operator}', found {self.found()}")
        if char == '"':
            return start, self.quoted(), True
        if char in "(=<>!":
            self.fail(start, f"unexpected '{char}'; put a value that starts with it in double quotes")
        end = start
        while end < len(self.text) and not self.text[end].isspace() and self.text[end] not in '()"':
            end += 1
        if end < len(self.text) and self.text[end] in '("':
            self.fail(end, f"unexpected '{self.text[end]}' in a value; put the whole value in double quotes")
        self.pos = end
        value = self.text[start:end]
        if value.upper() in _KEYWORDS:
            self.fail(
                start,
                f"expected a value after '{operator}', found the keyword '{value.upper()}' "
                "(put it in double quotes to mean the text)",
            )
        return start, value, False

    def quoted(self) -> str:
        """Read a double-quoted string at the current position; \\" and \\\\ are escapes."""
        start = self.pos
        pos = start + 1
        out: list[str] = []
        while pos < len(self.text):
            char = self.text[pos]
            if char == '"':
                self.pos = pos + 1
                return "".join(out)
            if char == "\\" and pos + 1 < len(self.text) and self.text[pos + 1] in '"\\':
                out.append(self.text[pos + 1])
                pos += 2
                continue
            out.append(char)
            pos += 1
        self.fail(start, "unterminated string; it needs a closing '\"'")


def _convert(parser: _Parser, label: str, field: Field, value: str, at: int) -> object:
    """Turn the text of a value into the parameter for a field of `field.kind`."""
    kind = field.kind
    if kind == "enum":
        upper = value.upper() if value.isascii() else value
        if upper not in field.values:
            allowed = ", ".join(v.lower() for v in field.values)
            parser.fail(at, f"'{value}' is not a valid {label}; it is one of: {allowed}")
        return upper
    if kind == "int":
        if not _INT.fullmatch(value) or not -_INT64 <= int(value) < _INT64:
            parser.fail(at, f"'{label}' needs a whole number, not '{value}'")
        return int(value)
    if kind == "float":
        number = float(value) if _FLOAT.fullmatch(value) else math.nan
        if not math.isfinite(number):
            parser.fail(at, f"'{label}' needs a number, not '{value}'")
        return number
    if kind == "bool":
        if value.lower() not in ("true", "false"):
            parser.fail(at, f"'{label}' needs true or false, not '{value}'")
        return value.lower() == "true"
    if kind == "datetime":
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
        except (ValueError, OverflowError):
            parser.fail(at, f"'{label}' needs an ISO 8601 date and time such as 2026-01-01T00:00:00Z, not '{value}'")
    return value
