"""Input rules that need no store: database URLs, codes, task specs, job names."""

from __future__ import annotations

import pytest
from eventsourcing.utils import resolve_topic

from domain.errors import ValidationError
from domain.inputs import file_name, job_code, task_spec
from domain.ledger import open_store
from domain.rules import check_code, check_priority
from persistence import StorageError, open_storage, parse_database_url
from persistence.memory import MemoryStorage
from persistence.postgres import GapFreePostgresApplicationRecorder, PostgresStorage
from persistence.sqlite import SQLiteStorage
from projections.stores import open_read_store


def test_an_sqlite_url_names_the_file():
    config = parse_database_url("sqlite:///data/jobledger.db")
    assert config.backend == "sqlite"
    assert (
        config.env["SQLITE_DBNAME"] == "/data/jobledger.db"
    )  # absolute, as a file: URL reads (tests/unit/test_urls.py)
    assert parse_database_url("sqlite:////var/lib/j.db").env["SQLITE_DBNAME"] == "/var/lib/j.db"


def test_a_postgresql_url_sets_host_port_user_database_and_schema():
    config = parse_database_url("postgresql://bob:s3cret@db.example:6543/ledger?schema=prod")
    assert config.backend == "postgres"
    env = config.env
    assert (env["POSTGRES_HOST"], env["POSTGRES_PORT"], env["POSTGRES_USER"]) == ("db.example", "6543", "bob")
    assert (env["POSTGRES_DBNAME"], env["POSTGRES_SCHEMA"]) == ("ledger", "prod")
    assert "s3cret" not in config.display


def test_postgresql_events_are_written_by_the_gap_free_recorder():
    env = parse_database_url("postgresql://db.example/ledger").env
    assert resolve_topic(env["APPLICATION_RECORDER_TOPIC"]) is GapFreePostgresApplicationRecorder


def test_each_url_opens_the_storage_of_its_backend():
    assert isinstance(open_storage("sqlite:///j.db"), SQLiteStorage)
    assert isinstance(open_storage("postgresql://db.example/ledger"), PostgresStorage)
    memory = open_storage("memory://")
    assert isinstance(memory, MemoryStorage)
    assert memory.env["PERSISTENCE_MODULE"] == "eventsourcing.popo"


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://", "nonsense", "memory://somewhere"])
def test_an_unsupported_url_is_refused_with_what_to_write_instead(url):
    with pytest.raises(StorageError) as caught:
        parse_database_url(url)
    assert str(caught.value).startswith("JOBLEDGER_DATABASE_URL: ")
    assert "sqlite:///" in caught.value.reason or "memory://" in caught.value.reason


def test_the_ledger_refuses_an_unsupported_url_as_a_validation_error():
    with pytest.raises(ValidationError) as caught:
        open_store("mysql://x/y")
    assert caught.value.field == "JOBLEDGER_DATABASE_URL"
    assert caught.value.reason == "unsupported scheme 'mysql': use sqlite:///path or postgresql://user@host/db"


def test_the_read_models_refuse_the_in_memory_store_with_what_to_use_instead():
    with pytest.raises(ValidationError) as caught:
        open_read_store(parse_database_url("memory://"))
    assert caught.value.field == "JOBLEDGER_DATABASE_URL" and "sqlite:///" in caught.value.reason


@pytest.mark.parametrize("code", ["high_prio", "a", "render-farm-2", "0"])
def test_valid_queue_codes(code):
    assert check_code("code", code) == code


@pytest.mark.parametrize("code", ["", "High", "a b", "x/y", "é", "a" * 101, None, 5])
def test_invalid_queue_codes_are_refused_with_the_field(code):
    with pytest.raises(ValidationError) as caught:
        check_code("code", code)
    assert caught.value.field == "code"


@pytest.mark.parametrize("priority", [-1, 1001, 2.5, "high", True])
def test_priorities_outside_0_to_1000_are_refused(priority):
    with pytest.raises(ValidationError):
        check_priority("priority", priority)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("share=projects/thefilm/latest_edit.mov", "latest_edit.mov"),
        ("/Volumes/projects/creatures_showreel_2018.mov", "creatures_showreel_2018.mov"),
        ("C:\\renders\\shot_010.exr", "shot_010.exr"),
        ("/data/plates/", "plates"),
    ],
)
def test_a_job_without_a_code_is_named_after_its_first_files_name(path, name):
    assert file_name(path) == name
    assert job_code(None, None, [task_spec("t", path)]) == name


def test_a_job_with_nothing_to_name_it_after_needs_a_code():
    with pytest.raises(ValidationError) as caught:
        job_code(None, None, [])
    assert caught.value.field == "code"


def test_a_task_source_is_a_path_or_an_object_with_a_path():
    assert task_spec("t", {"source": {"path": "a.mov", "client": "x"}}).source == {
        "path": "a.mov",
        "client": "x",
    }
    with pytest.raises(ValidationError) as caught:
        task_spec("tasks[0]", {"source": {"client": "x"}})
    assert caught.value.field == "tasks[0].source.path"
    with pytest.raises(ValidationError):
        task_spec("t", {"source": ""})


def test_a_command_task_needs_a_command_instead_of_a_path():
    spec = task_spec("t", {"source": {"kind": "command", "command": "echo hi"}})
    assert spec.source["kind"] == "command"
    with pytest.raises(ValidationError):
        task_spec("t", {"source": {"kind": "command"}})
    with pytest.raises(ValidationError):
        task_spec("t", {"source": {"kind": "teleport", "path": "x"}})


def test_a_task_with_an_unknown_field_is_refused():
    with pytest.raises(ValidationError) as caught:
        task_spec("tasks[2]", {"source": "a", "colour": "red"})
    assert "colour" in caught.value.reason
