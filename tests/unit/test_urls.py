"""Database URLs as people write them, and the look at a store before a command opens it:
SQLite paths read like `file:` URLs, a store that is not there is named with what to do,
and looking never creates anything."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from persistence import StorageError, parse_database_url
from persistence.presence import StoreUnusable, check_store
from persistence.urls import DEFAULT_DATABASE_URL


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///tmp/x.db", "/tmp/x.db"),  # absolute, as file:///tmp/x.db is
        ("sqlite:////tmp/x.db", "/tmp/x.db"),  # SQLAlchemy's absolute form
        ("sqlite://localhost/tmp/x.db", "/tmp/x.db"),
        ("sqlite:///var/lib/my%20store.db", "/var/lib/my store.db"),
    ],
)
def test_an_sqlite_url_with_slashes_names_an_absolute_path(url, path):
    config = parse_database_url(url)
    assert config.env["SQLITE_DBNAME"] == path
    assert config.sqlite_path == Path(path)


@pytest.mark.parametrize("url", ["sqlite:x.db", "sqlite:./x.db", "sqlite:data/x.db"])
def test_an_sqlite_url_without_slashes_is_relative_to_the_current_folder(url):
    relative = url.removeprefix("sqlite:")
    assert parse_database_url(url).sqlite_path == Path.cwd() / relative


def test_the_home_folder_and_the_default():
    assert parse_database_url("sqlite:~/x.db").sqlite_path == Path.home() / "x.db"
    assert parse_database_url(DEFAULT_DATABASE_URL).sqlite_path == Path.cwd() / "jobledger.db"


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("sqlite://fileserver/x.db", "an SQLite file is on this machine, not on 'fileserver'"),
        ("sqlite:", "an SQLite URL names a file"),
        ("sqlite://", "an SQLite URL names a file"),
        ("sqlite:///tmp/", "an SQLite URL names a file"),
    ],
)
def test_an_sqlite_url_that_names_no_file_is_refused_with_the_forms(url, said):
    with pytest.raises(StorageError) as caught:
        parse_database_url(url)
    assert caught.value.reason.startswith(said)
    assert "sqlite:///absolute/path.db, or sqlite:relative/path.db" in caught.value.reason


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_a_missing_sqlite_store_is_named_and_not_created(tmp_path):
    config = parse_database_url(f"sqlite:///{tmp_path}/nothing.db")
    with pytest.raises(StoreUnusable) as caught:
        check_store(config, create=False)
    assert f"no store at {tmp_path}/nothing.db" in caught.value.reason
    assert "this command creates none" in caught.value.reason
    assert _tree(tmp_path) == []


def test_a_store_to_be_created_needs_a_folder_that_exists(tmp_path):
    check_store(parse_database_url(f"sqlite:///{tmp_path}/new.db"), create=True)  # fine, and made nothing
    assert _tree(tmp_path) == []
    with pytest.raises(StoreUnusable) as caught:
        check_store(parse_database_url(f"sqlite:///{tmp_path}/no/such/new.db"), create=True)
    assert caught.value.reason == (
        f"cannot create the SQLite file {tmp_path}/no/such/new.db: the folder {tmp_path}/no/such does not exist; "
        f"create it (mkdir -p {tmp_path}/no/such) or name a file in a folder that exists"
    )


def test_a_folder_or_a_file_of_something_else_is_no_store(tmp_path):
    with pytest.raises(StoreUnusable) as caught:
        check_store(parse_database_url(f"sqlite:///{tmp_path}"), create=True)
    assert caught.value.reason.startswith(f"{tmp_path} is a folder, not an SQLite file")
    notes = tmp_path / "notes.db"
    notes.write_text("shopping list")
    with pytest.raises(StoreUnusable) as caught:
        check_store(parse_database_url(f"sqlite:///{notes}"), create=False)
    assert caught.value.reason == f"cannot read {notes} as an SQLite store: file is not a database"
    assert notes.read_text() == "shopping list"


def test_a_url_written_for_the_old_relative_reading_is_caught(tmp_path, monkeypatch):
    """`sqlite:///data/x.db` once meant ./data/x.db: with that file here and /data/x.db
    absent, the command says so instead of opening or making another store."""
    monkeypatch.chdir(tmp_path)
    name = f"store-{os.getpid()}-missing"
    (tmp_path / name).mkdir()
    (tmp_path / name / "x.db").write_bytes(b"")
    with pytest.raises(StoreUnusable) as caught:
        check_store(parse_database_url(f"sqlite:///{name}/x.db"), create=True)
    assert caught.value.reason.startswith(f"sqlite:///{name}/x.db names /{name}/x.db, which does not exist;")
    assert f"a file in the current folder is sqlite:{name}/x.db" in caught.value.reason


def test_an_unreachable_postgresql_is_one_line_with_what_to_check():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnusable) as caught:
        check_store(parse_database_url(f"postgresql://postgres@127.0.0.1:{port}/ledger"), create=True)
    reason = caught.value.reason
    assert reason.startswith(f"cannot reach PostgreSQL at 127.0.0.1:{port} (database ledger, user postgres): ")
    assert reason.endswith("Is it running, and is the database URL (--database-url or $JOBLEDGER_DATABASE_URL) right?")
    assert "\n" not in reason
