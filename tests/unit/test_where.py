"""The `where` language: parsing, errors, and what compiled SQL selects (in-memory SQLite)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import ValidationError
from projections.where import DOLLAR, MAX_DEPTH, MAX_LENGTH, QMARK, Field, compile_where

JOB_STATUSES = ("INIT", "PENDING", "WAITING", "RUNNING", "PAUSED", "FAILED", "ABORTED", "DONE")
TASK_STATUSES = ("PENDING", "QUEUED", "BOOTING", "EXECUTING", "FAILED", "ONHOLD", "EXCLUDED", "DONE")

JOB_FIELDS = {
    "id": Field("jobs.id", "id"),
    "code": Field("jobs.code", "text"),
    "status": Field("jobs.status", "enum", JOB_STATUSES),
    "priority": Field("jobs.priority", "int"),
    "user": Field("jobs.user", "text"),
    "destination": Field("jobs.destination", "text"),
    "speed": Field("jobs.speed", "float"),
    "created": Field("jobs.created", "datetime"),
    "queue.id": Field("jobs.queue_id", "id"),
    "queue.code": Field("(SELECT q.code FROM queues q WHERE q.id = jobs.queue_id)", "text"),
}
TASK_FIELDS = {
    "id": Field("tasks.id", "id"),
    "uri": Field("tasks.uri", "text"),
    "status": Field("tasks.status", "enum", TASK_STATUSES),
    "job.id": Field("tasks.job_id", "id"),
}
QUEUE_FIELDS = {
    "code": Field("queues.code", "text"),
    "default": Field("queues.is_default", "bool"),
}

J1 = "614d660d-e50d-45bb-027c-9bdd00000001"
J2 = "614d660d-e50d-45bb-027c-9bdd00000002"
J3 = "614d660d-e50d-45bb-027c-9bdd00000003"
J4 = "614d660d-e50d-45bb-027c-9bdd00000004"
J5 = "614d660d-e50d-45bb-027c-9bdd00000005"
Q_DEFAULT = "5a4f7211-1da7-ee15-c5d4-3af400000001"
Q_HIGH = "5a4f7211-1da7-ee15-c5d4-3af400000002"

# id, code, status, priority, user, destination, speed, created, queue_id
JOBS = [
    (
        J1,
        "latest_edit.mov",
        "ABORTED",
        500,
        "lars@edit.com",
        "stockholm",
        0.0,
        "2025-12-01T10:00:00+00:00",
        Q_DEFAULT,
    ),
    (J2, "x and y.png", "DONE", 100, "employee@acmevfx.com", None, 12.5, "2026-01-02T08:00:00+00:00", Q_HIGH),
    (J3, "render.exr", "FAILED", 900, "lars@edit.com", "hq", 3.25, "2026-01-03T08:00:00+00:00", Q_HIGH),
    (
        J4,
        "plate.dpx",
        "RUNNING",
        500,
        "employee@acmevfx.com",
        "stockholm",
        99.0,
        "2026-02-01T00:00:00+00:00",
        Q_DEFAULT,
    ),
    (
        J5,
        'say "hi" \\o/',
        "EXECUTING_NOT_A_JOB_STATUS",
        0,
        None,
        "hq",
        1.0,
        "2026-03-01T00:00:00+00:00",
        Q_DEFAULT,
    ),
]
# id, uri, status, job_id
TASKS = [
    ("t1", "0", "EXECUTING", J1),
    ("t2", "1", "DONE", J1),
    ("t3", "2", "QUEUED", J1),
    ("t4", "0", "EXECUTING", J3),
]


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.executescript(
        """
        CREATE TABLE queues (id TEXT PRIMARY KEY, code TEXT NOT NULL, is_default BOOLEAN NOT NULL);
        CREATE TABLE jobs (id TEXT PRIMARY KEY, code TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER,
                           user TEXT, destination TEXT, speed REAL, created TEXT, queue_id TEXT);
        CREATE TABLE tasks (id TEXT PRIMARY KEY, uri TEXT, status TEXT, job_id TEXT);
        """
    )
    connection.executemany(
        "INSERT INTO queues VALUES (?, ?, ?)", [(Q_DEFAULT, "default", True), (Q_HIGH, "high_prio", False)]
    )
    connection.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", JOBS)
    connection.executemany("INSERT INTO tasks VALUES (?, ?, ?, ?)", TASKS)
    yield connection
    connection.close()


def sqlite_param(value: object) -> object:
    """Datetimes are stored as ISO text in this test table; compare them the same way."""
    return value.isoformat() if isinstance(value, datetime) else value


def select(db: sqlite3.Connection, table: str, fields: dict[str, Field], expression: str) -> list[str]:
    sql, params = compile_where(expression, fields, QMARK)
    rows = db.execute(f"SELECT id FROM {table} WHERE {sql} ORDER BY id", [sqlite_param(p) for p in params])
    return [row[0] for row in rows]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # the contract's examples
        ("status=aborted", [J1]),
        ('code="x and y.png"', [J2]),
        ("status<>running AND priority>=500", [J1, J3]),
        ("(status=failed OR status=aborted) AND user=lars@edit.com", [J1, J3]),
        # seeds style: leading entity, any case
        ("Job where status=aborted", [J1]),
        ("job WHERE user=lars@edit.com", [J1, J3]),
        ("where code=render.exr", [J3]),
        # NOT and precedence NOT > AND > OR
        ("NOT status=done", [J1, J3, J4, J5]),
        ("not (status=done or status=aborted)", [J3, J4, J5]),
        ("NOT NOT status=done", [J2]),
        ("status=done OR status=failed AND priority>500", [J2, J3]),
        ("(status=done OR status=failed) AND priority<500", [J2]),
        ("status=aborted OR NOT priority>=100 AND code=plate.dpx", [J1]),
        # keywords, field names and enum values in any case
        ("Status=ABORTED", [J1]),
        ("status=Aborted oR status=DoNe", [J1, J2]),
        ("STATUS = aborted aNd PRIORITY = 500", [J1]),
        # every operator
        ("priority=500", [J1, J4]),
        ("priority!=500", [J2, J3, J5]),
        ("priority<>500", [J2, J3, J5]),
        ("priority<500", [J2, J5]),
        ("priority<=500", [J1, J2, J4, J5]),
        ("priority>500", [J3]),
        ("priority>=-1", [J1, J2, J3, J4, J5]),
        ("code<m", [J1]),
        ("speed>=3.25", [J2, J3, J4]),
        ("speed<1e1", [J1, J3, J5]),
        ("created>=2026-01-01T00:00:00Z", [J2, J3, J4, J5]),
        ("created<2026-01-03T09:00:00+01:00", [J1, J2]),
        ('created = "2026-02-01 00:00:00"', [J4]),
        # null, and two-valued logic around a NULL column
        ("destination=null", [J2]),
        ("destination != NULL", [J1, J3, J4, J5]),
        ("destination!=stockholm", [J2, J3, J5]),
        ("NOT destination=stockholm", [J2, J3, J5]),
        ('destination="null"', []),
        ("user<>lars@edit.com", [J2, J4, J5]),
        # quoting
        (r'code="say \"hi\" \\o/"', [J5]),
        ('code = "x and y.png" AND status=done', [J2]),
        # related fields
        ("queue.code=high_prio", [J2, J3]),
        ("queue.code=high_prio AND NOT status=failed", [J2]),
        (f"queue.id={Q_DEFAULT}", [J1, J4, J5]),
        (f"id={J3}", [J3]),
        # whitespace and empty
        ("", [J1, J2, J3, J4, J5]),
        ("   \t\n", [J1, J2, J3, J4, J5]),
        ("  ( ( status = done ) )  ", [J2]),
    ],
)
def test_a_valid_expression_selects_the_expected_jobs(db, expression, expected):
    assert select(db, "jobs", JOB_FIELDS, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        (f"task WHERE job.id={J1}", ["t1", "t2", "t3"]),
        (f"task WHERE job.id={J1} AND status<>executing", ["t2", "t3"]),
        (f'job.id="{J3}" and status=EXECUTING', ["t4"]),
        ("status=executing", ["t1", "t4"]),
    ],
)
def test_task_queries_in_the_seeds_style(db, expression, expected):
    assert select(db, "tasks", TASK_FIELDS, expression) == expected


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("default=true", [Q_DEFAULT]), ("default=FALSE", [Q_HIGH]), ("default!=True", [Q_HIGH])],
)
def test_bool_fields(db, expression, expected):
    assert select(db, "queues", QUEUE_FIELDS, expression) == expected


def test_values_are_converted_to_the_kind_of_their_field():
    _, params = compile_where(
        "status=aborted AND priority=-7 AND speed=2.5 AND created>2026-01-01T00:00:00Z AND code=500",
        JOB_FIELDS,
        QMARK,
    )
    assert params == ["ABORTED", -7, 2.5, datetime(2026, 1, 1, tzinfo=UTC), "500"]
    _, params = compile_where("created>2026-01-01T02:00:00+02:00 OR created<2026-01-01", JOB_FIELDS, QMARK)
    assert params == [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)]
    assert all(p.tzinfo is not None for p in params if isinstance(p, datetime))
    assert compile_where("default=True", QUEUE_FIELDS, QMARK)[1] == [True]


def test_empty_expression_is_always_true():
    assert compile_where("", JOB_FIELDS, DOLLAR) == ("1=1", [])
    assert compile_where(None, JOB_FIELDS, DOLLAR) == ("1=1", [])
    assert compile_where("  ", JOB_FIELDS, DOLLAR, first_index=4) == ("1=1", [])


def test_dollar_placeholders_are_numbered_from_first_index():
    sql, params = compile_where(
        "status=done AND (priority>5 OR destination=null OR code!=x)", JOB_FIELDS, DOLLAR, first_index=3
    )
    assert sql == (
        "((jobs.status = $3) AND ((jobs.priority > $4) OR (jobs.destination IS NULL)"
        " OR ((jobs.code = $5) IS NOT TRUE)))"
    )
    assert params == ["DONE", 5, "x"]
    assert compile_where("code=a", JOB_FIELDS, DOLLAR)[0] == "(jobs.code = $1)"
    assert compile_where("code=a OR code=b", JOB_FIELDS, QMARK)[0] == "((jobs.code = ?) OR (jobs.code = ?))"


@pytest.mark.parametrize(
    ("expression", "column", "phrase"),
    [
        ("colour=red", 1, "unknown field 'colour'; fields are: code, created, destination, id, priority"),
        ("status=done AND colour=red", 17, "unknown field 'colour'"),
        ("queue.name=x", 1, "unknown field 'queue.name'"),
        ("status=", 8, "expected a value after '='"),
        ("priority >= ", 13, "expected a value after '>='"),
        ("(status=)", 9, "expected a value after '='"),
        ("status", 7, "expected an operator"),
        ("status aborted", 8, "expected an operator"),
        ("status=aborted status=done", 16, "expected AND, OR or the end of the expression, found 'status'"),
        ("status=aborted ANDstatus=done", 16, "found 'ANDstatus'"),
        ('code="x and y.png', 6, "unterminated string"),
        ('code="ends with escaped quote\\"', 6, "unterminated string"),
        ("(status=done", 13, "expected AND, OR or ')' to close the '(' at column 1"),
        ("((status=done) OR code=a", 25, "close the '(' at column 1"),
        ("status=done)", 12, "unmatched ')'"),
        (")", 1, "expected a condition"),
        ("()", 2, "expected a condition after '('"),
        ("=done", 1, "expected a condition (field OP value), found '='"),
        ("status=done AND", 16, "after 'AND'"),
        ("status=done OR ", 16, "after 'OR'"),
        ("status=done AND OR code=x", 17, "found the keyword 'OR'"),
        ("NOT", 4, "expected a condition after 'NOT'"),
        ("NOT = 1", 1, "found the keyword 'NOT'"),
        ("Job where", 10, "expected a condition after 'where'"),
        ("Job where   ", 13, "expected a condition after 'where'"),
        ("status=finished", 8, "'finished' is not a valid status; it is one of: init, pending, waiting"),
        ("status=null_", 8, "not a valid status"),
        ("status<done", 7, "'status' can only be compared with =, != or <>, not '<'"),
        ("priority=high", 10, "'priority' needs a whole number, not 'high'"),
        ("priority=1.5", 10, "whole number"),
        ("priority=99999999999999999999", 10, "whole number"),
        ("speed=fast", 7, "'speed' needs a number"),
        ("speed=nan", 7, "needs a number"),
        ("speed=1e999", 7, "needs a number"),
        ("created>yesterday", 9, "ISO 8601"),
        ("created>2026-13-01", 9, "ISO 8601"),
        ("priority<null", 10, "null can only be compared with =, != or <>"),
        ("code==x", 6, "unexpected '='"),
        ("code=a(b)", 7, "unexpected '(' in a value"),
        ('code=ab"c"', 8, "unexpected '\"' in a value"),
        ("code=and", 6, "found the keyword 'AND'"),
        ("code=x y", 8, "found 'y'"),
        ("code\x00=x", 5, "invalid character U+0000"),
    ],
)
def test_an_invalid_expression_says_where_and_why(expression, column, phrase):
    with pytest.raises(ValidationError) as caught:
        compile_where(expression, JOB_FIELDS, QMARK)
    assert caught.value.field == "where"
    assert caught.value.reason.startswith(f"column {column}: "), caught.value.reason
    assert phrase in caught.value.reason, caught.value.reason


def test_bool_fields_only_take_true_or_false():
    with pytest.raises(ValidationError, match="column 9: 'default' needs true or false"):
        compile_where("default=yes", QUEUE_FIELDS, QMARK)
    with pytest.raises(ValidationError, match="column 8: 'default' can only be compared with"):
        compile_where("default>true", QUEUE_FIELDS, QMARK)


def test_long_and_deep_expressions_are_refused():
    with pytest.raises(ValidationError, match="at most 4000"):
        compile_where("code=" + "x" * MAX_LENGTH, JOB_FIELDS, QMARK)
    too_deep = f"nests deeper than {MAX_DEPTH} levels"
    with pytest.raises(ValidationError, match=f"column {MAX_DEPTH + 1}: the expression {too_deep}"):
        compile_where("(" * (MAX_DEPTH + 1) + "code=x" + ")" * (MAX_DEPTH + 1), JOB_FIELDS, QMARK)
    with pytest.raises(ValidationError, match=too_deep):
        compile_where("NOT " * (MAX_DEPTH + 1) + "code=x", JOB_FIELDS, QMARK)
    with pytest.raises(ValidationError, match=too_deep):
        compile_where("(" * 3000, JOB_FIELDS, QMARK)
    with pytest.raises(ValidationError, match=too_deep):
        compile_where("NOT (" * (MAX_DEPTH // 2 + 1) + "code=x" + ")" * (MAX_DEPTH // 2 + 1), JOB_FIELDS, QMARK)


def test_the_deepest_and_longest_allowed_expressions_still_run(db):
    assert select(db, "jobs", JOB_FIELDS, "(" * MAX_DEPTH + "status=done" + ")" * MAX_DEPTH) == [J2]
    assert select(db, "jobs", JOB_FIELDS, "NOT " * (MAX_DEPTH // 2 * 2) + "status=done") == [J2]
    heavy = "code=zz OR queue.code=high_prio AND ("
    assert select(db, "jobs", JOB_FIELDS, heavy * MAX_DEPTH + "status=done" + ")" * MAX_DEPTH) == [J2]
    chain = " OR ".join(["code=zz"] * 360) + " OR status=done"
    assert len(chain) <= MAX_LENGTH
    assert select(db, "jobs", JOB_FIELDS, chain) == [J2]


HOSTILE = [
    "'",
    "''",
    '"',
    "' OR 1=1 --",
    "' OR '1'='1",
    "x'; DROP TABLE jobs; --",
    "1; DROP TABLE jobs",
    "DROP TABLE jobs",
    "--",
    "/* comment */",
    ";",
    "a\\",
    '\\"',
    "$1",
    "?",
    ") OR (1=1",
    "NULL",
    "jobs.code",
    "robert'); DELETE FROM jobs WHERE ('1'='1",
    "line\nbreak",
    "ünïcødé ✓",
]


def quote(value: str) -> str:
    """Write `value` as a double-quoted literal of the language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_hostile_value(db: sqlite3.Connection, value: str, expression: str) -> None:
    db.execute("INSERT INTO jobs (id, code, status) VALUES ('hostile', ?, 'DONE')", (value,))
    sql, params = compile_where(expression, JOB_FIELDS, QMARK)
    assert sql == "(jobs.code = ?)"
    assert params == [value]
    found = db.execute(f"SELECT id, code FROM jobs WHERE {sql}", params).fetchall()
    assert found == [("hostile", value)] or (value in [job[1] for job in JOBS] and ("hostile", value) in found)
    assert db.execute("SELECT count(*) FROM jobs").fetchone()[0] == len(JOBS) + 1
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"jobs", "queues", "tasks"}
    db.execute("DELETE FROM jobs WHERE id='hostile'")


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_quoted_values_only_ever_become_parameters(db, value):
    check_hostile_value(db, value, f"code={quote(value)}")


@pytest.mark.parametrize("value", ["'", "x';DROP", "'OR'1'='1'--", "1;DROP", "--", "$1", "?", "/**/"])
def test_hostile_bare_values_only_ever_become_parameters(db, value):
    check_hostile_value(db, value, f"code={value}")


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=60).filter(lambda v: "\x00" not in v))
def test_any_quoted_text_round_trips_as_a_parameter(value):
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE jobs (id TEXT, code TEXT, status TEXT)")
    connection.executemany(
        "INSERT INTO jobs (id, code, status) VALUES (?, ?, 'DONE')", [("a", value), ("b", value + "x")]
    )
    sql, params = compile_where(f"code={quote(value)}", JOB_FIELDS, QMARK)
    assert (sql, params) == ("(jobs.code = ?)", [value])
    assert connection.execute(f"SELECT id FROM jobs WHERE {sql}", params).fetchall() == [("a",)]
    assert connection.execute("SELECT count(*) FROM jobs").fetchone() == (2,)


def compiles_or_refuses(expression: str, db: sqlite3.Connection) -> None:
    """Compiling either gives SQL that runs, or raises ValidationError — nothing else."""
    try:
        sql, params = compile_where(expression, JOB_FIELDS, QMARK)
    except ValidationError as error:
        assert error.field == "where"
        assert error.reason.startswith("column ") or "at most" in error.reason
        return
    # Run it wrapped the way a read model might, to prove the SQL is valid and not too deep.
    query = (
        "SELECT id FROM jobs WHERE status <> ? AND (jobs.queue_id IS NULL OR jobs.queue_id IN "
        f"(SELECT id FROM queues)) AND ({sql}) ORDER BY priority DESC, id LIMIT 51"
    )
    db.execute(query, ["ARCHIVED", *(sqlite_param(p) for p in params)]).fetchall()


@pytest.fixture(scope="module")
def fuzz_db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:")
    connection.executescript(
        """
        CREATE TABLE queues (id TEXT PRIMARY KEY, code TEXT NOT NULL);
        CREATE TABLE jobs (id TEXT PRIMARY KEY, code TEXT, status TEXT, priority INTEGER, user TEXT,
                           destination TEXT, speed REAL, created TEXT, queue_id TEXT);
        INSERT INTO jobs (id, code, status) VALUES ('a', 'b', 'DONE');
        """
    )
    yield connection
    connection.close()


@settings(max_examples=500, deadline=None)
@given(expression=st.text(max_size=80))
def test_random_text_only_ever_raises_validation_errors(fuzz_db, expression):
    compiles_or_refuses(expression, fuzz_db)


TOKENS = [
    *JOB_FIELDS,
    "STATUS",
    "Queue.Code",
    "colour",
    "job",
    "where",
    "WHERE",
    "=",
    "!=",
    "<>",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!",
    "AND",
    "and",
    "Or",
    "OR",
    "NOT",
    "not",
    "(",
    ")",
    "((",
    "))",
    "aborted",
    "DONE",
    "running",
    "500",
    "-1",
    "1.5",
    "1e3",
    "nan",
    "true",
    "False",
    "null",
    "NULL",
    "2026-01-01T00:00:00Z",
    "2026-01-01",
    J1,
    "lars@edit.com",
    '"x and y.png"',
    '"',
    '\\"',
    '"\\\\"',
    "'",
    ";",
    "--",
    "DROP TABLE jobs",
    "\t",
    "\n",
]


@settings(max_examples=1500, deadline=None)
@given(parts=st.lists(st.tuples(st.sampled_from(TOKENS), st.sampled_from(["", " ", "  "])), max_size=14))
def test_token_soup_only_ever_raises_validation_errors(fuzz_db, parts):
    compiles_or_refuses("".join(token + gap for token, gap in parts), fuzz_db)


OPENERS = [
    "(",
    "NOT ",
    "not(",
    "( NOT ",
    "queue.code=x AND (",
    "queue.code=x OR NOT (",
    "queue.code=x OR queue.code=y AND (",
    "NOT queue.code=x AND NOT queue.code=y OR (",
]


@settings(max_examples=500, deadline=None)
@given(openers=st.lists(st.sampled_from(OPENERS), max_size=3 * MAX_DEPTH))
def test_nesting_is_refused_before_the_database_would_choke(fuzz_db, openers):
    closers = ")" * sum(opener.count("(") for opener in openers)
    compiles_or_refuses("".join(openers) + "queue.code=z" + closers, fuzz_db)
