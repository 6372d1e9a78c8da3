"""A field is declared once, in `domain.catalogue`: the read models, the GraphQL schema and
the client's field lists follow it, and the commands check input against it."""

from __future__ import annotations

import dataclasses

import pytest
from graphql import GraphQLNonNull, parse, validate

from api.schema import build_schema
from domain.catalogue import DEFAULT_PRIORITY, JOB, QUEUE, TASK
from domain.errors import ValidationError
from domain.queue import ExecutionMode, QueueStatus
from domain.rules import UNSET
from jobledger_client import documents
from jobledger_client.models import Queue, QueueSettings
from projections.schema import COLUMNS, JOBS, QUEUES, TASKS, nullable


@pytest.fixture(scope="module")
def served():  # type: ignore[no-untyped-def]
    return build_schema()._schema


@pytest.mark.parametrize(("catalogue", "table"), [(QUEUE, QUEUES), (JOB, JOBS), (TASK, TASKS)])
def test_every_field_has_a_column_null_only_where_the_field_may_be(catalogue, table):
    columns = dict(COLUMNS[table])
    for f in catalogue:
        assert f.column in columns, f"{table} has no column for {f.name}"
        assert (f.column in nullable(table)) == f.nullable, f.name


def test_the_queue_inputs_and_the_queue_type_follow_the_catalogue(served):
    create, update = served.type_map["CreateQueueInput"].fields, served.type_map["UpdateQueueInput"].fields
    queue = served.type_map["Queue"].fields
    assert {f.graphql_name for f in QUEUE.creatable} <= set(create)
    assert {f.graphql_name for f in QUEUE.updatable} == set(update)
    for f in QUEUE:
        assert isinstance(queue[f.graphql_name].type, GraphQLNonNull) != f.nullable, f.name
    assert create["priority"].default_value == DEFAULT_PRIORITY


def test_the_client_reads_every_queue_field_and_sets_every_updatable_one():
    assert {f.name for f in QUEUE} <= {f.name for f in dataclasses.fields(Queue)}
    assert set(QueueSettings.__annotations__) == {f.name for f in QUEUE.updatable}


def test_every_client_document_is_valid_against_the_served_schema(served):
    sent = {name: text for name, text in vars(documents).items() if name.isupper() and isinstance(text, str)}
    operations = {name: text for name, text in sent.items() if text.lstrip().startswith(("query", "mutation", "sub"))}
    assert operations
    for name, text in operations.items():
        assert validate(served, parse(text)) == [], name


def test_a_new_queue_takes_the_defaults_of_the_fields_it_is_not_given():
    fields = QUEUE.new({"code": "ingest", "idle_timeout_s": 0})
    assert fields["priority"] == DEFAULT_PRIORITY and fields["idle_timeout_s"] == 0
    assert (fields["status"], fields["execution_mode"]) == (QueueStatus.WAITING, ExecutionMode.PRIORITY)
    assert fields["metadata"] == {} and fields["metadata"] is not QUEUE["metadata"].default


def test_a_change_names_the_field_it_refuses():
    with pytest.raises(ValidationError, match="idleTimeoutS"):
        QUEUE.changes({"idle_timeout_s": -1})
    with pytest.raises(ValidationError, match="code"):
        QUEUE.changes({"code": "other"})
    assert QUEUE.changes({"max_concurrency": None, "priority": UNSET}) == {"max_concurrency": None}


def test_a_job_left_without_a_code_is_named_later():
    assert JOB.new({})["code"] is None
    with pytest.raises(ValidationError, match="code"):
        JOB.new({"code": "  "})
