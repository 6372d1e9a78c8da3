"""The limits on what callers send, and the characters no store can hold: the rules alone."""

from __future__ import annotations

import json
import math

import pytest

from domain.dispatch import check_claim, error_text
from domain.errors import ValidationError
from domain.inputs import job_code, task_spec, task_specs
from domain.job import Job
from domain.limits import (
    MAX_DESCRIPTION,
    MAX_ERROR_TEXT,
    MAX_JOB_CODE,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    MAX_LEASE_SECONDS,
    MAX_PATH,
    MAX_TAG_KEY,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MAX_TASKS_PER_CALL,
)
from domain.rules import check_json, check_json_object, check_string, check_tags
from domain.task import identity_key, stored_key


def refused(check, *args, **kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        check(*args, **kwargs)
    return caught.value


def document_of(size: int) -> dict[str, str]:
    """A JSON object of exactly `size` bytes, as the store keeps it."""
    document = {"x": "a" * (size - len('{"x":""}'))}
    assert len(json.dumps(document, separators=(",", ":")).encode()) == size
    return document


def nested(levels: int) -> dict:
    document: dict = {}
    for _ in range(levels - 1):
        document = {"a": document}
    return document


# -- characters no store can hold ------------------------------------------------


@pytest.mark.parametrize(("bad", "named"), [("\x00", "NUL"), ("\ud800", "surrogate"), ("\udfff", "surrogate")])
def test_a_string_with_nul_or_a_lone_surrogate_is_refused_with_its_field(bad, named):
    error = refused(check_string, "description", f"a{bad}b", MAX_DESCRIPTION)
    assert error.field == "description"
    assert named in error.reason and "position 1" in error.reason


def test_a_string_with_a_proper_surrogate_pair_or_other_control_characters_is_kept():
    text = "clip \U0001f3ac\t\x01\x7f é"
    assert check_string("description", text, MAX_DESCRIPTION) == text


def test_nul_anywhere_in_a_json_document_names_the_path_to_it():
    assert refused(check_json_object, "metadata", {"foo": "a\x00b"}).field == "metadata.foo"
    assert refused(check_json_object, "metadata", {"a": {"b": [1, "x\x00"]}}).field == "metadata.a.b[1]"
    assert refused(check_json, "result", ["ok", {"log": "\ud83d"}]).field == "result[1].log"


def test_nul_in_a_json_key_names_the_object_holding_it():
    error = refused(check_json_object, "metadata", {"a": {"k\x00": 1}})
    assert error.field == "metadata.a"
    assert "NUL" in error.reason


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_not_json_numbers(number):
    error = refused(check_json_object, "metadata", {"score": [1.5, number]})
    assert error.field == "metadata.score[1]"
    assert "NaN and Infinity" in error.reason


def test_a_json_document_comes_back_as_plain_json():
    assert check_json("result", {"a": (1, 2), 3: None}) == {"a": [1, 2], "3": None}
    assert check_json("result", None) is None
    assert refused(check_json, "result", {"a": object()}).field == "result"


# -- sizes -----------------------------------------------------------------------


def test_a_json_document_may_be_as_large_as_the_limit_and_no_larger():
    assert check_json_object("metadata", document_of(MAX_JSON_BYTES)) == document_of(MAX_JSON_BYTES)
    error = refused(check_json_object, "metadata", document_of(MAX_JSON_BYTES + 1))
    assert error.message == f"metadata: at most {MAX_JSON_BYTES} bytes of JSON (got {MAX_JSON_BYTES + 1})"


def test_a_json_document_is_measured_in_utf8_bytes_not_characters():
    wide = {"x": "é" * (MAX_JSON_BYTES // 2)}  # two bytes each
    assert str(MAX_JSON_BYTES) in refused(check_json_object, "metadata", wide).reason


def test_a_json_document_may_nest_as_deep_as_the_limit_and_no_deeper():
    assert check_json_object("metadata", nested(MAX_JSON_DEPTH)) == nested(MAX_JSON_DEPTH)
    error = refused(check_json_object, "metadata", nested(MAX_JSON_DEPTH + 1))
    assert error.field == "metadata"
    assert str(MAX_JSON_DEPTH) in error.reason


def test_a_json_document_far_deeper_than_python_can_recurse_is_refused_all_the_same():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert str(MAX_JSON_DEPTH) in refused(check_json, "result", deep).reason


def test_a_string_may_be_as_long_as_its_limit_and_no_longer():
    assert check_string("description", "d" * MAX_DESCRIPTION, MAX_DESCRIPTION)
    error = refused(check_string, "description", "d" * (MAX_DESCRIPTION + 1), MAX_DESCRIPTION)
    assert error.message == f"description: at most {MAX_DESCRIPTION} characters (got {MAX_DESCRIPTION + 1})"


# -- jobs and tasks --------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "field"),
    [
        ({"source": "/in/a\x00.mov"}, "tasks[3].source"),
        ({"source": {"path": "/in/\x00"}}, "tasks[3].source.path"),
        ({"source": {"path": "/in/a", "options": {"checksum": "\ud800"}}}, "tasks[3].source.options.checksum"),
        ({"source": {"kind": "command", "command": ["echo", "\x00"]}}, "tasks[3].source.command[1]"),
        ({"source": "/in/a", "destination": "/out/\x00"}, "tasks[3].destination"),
        ({"source": "/in/a", "destination": {"path": "/out", "user": "\x00"}}, "tasks[3].destination.user"),
        ({"source": "/in/a", "metadata": {"foo": "\x00"}}, "tasks[3].metadata.foo"),
    ],
)
def test_nul_in_any_part_of_a_task_is_refused_with_the_tasks_field(task, field):
    tasks = ["/in/0", "/in/1", "/in/2", task]
    assert refused(task_specs, "tasks", tasks).field == field


def test_a_task_path_may_be_as_long_as_the_limit_and_no_longer():
    assert task_spec("tasks[0]", "/" + "p" * (MAX_PATH - 1)).source == "/" + "p" * (MAX_PATH - 1)
    assert str(MAX_PATH) in refused(task_spec, "tasks[0]", "/" + "p" * MAX_PATH).reason
    error = refused(task_spec, "tasks[0]", {"source": {"path": "/" + "p" * MAX_PATH}})
    assert error.field == "tasks[0].source.path"
    assert str(MAX_PATH) in error.reason


def test_a_task_source_object_is_a_json_document_with_its_limits():
    big = {"path": "/in/a", **document_of(MAX_JSON_BYTES)}
    error = refused(task_spec, "tasks[0]", {"source": big})
    assert error.field == "tasks[0].source"
    assert str(MAX_JSON_BYTES) in error.reason


def test_a_task_size_must_fit_in_64_bits():
    assert task_spec("t", {"source": "/a", "size": 2**63 - 1}).size == 2**63 - 1
    assert refused(task_spec, "t", {"source": "/a", "size": 2**63}).field == "t.size"


def test_a_call_takes_as_many_tasks_as_the_limit_and_no_more():
    assert len(task_specs("tasks", [f"/in/{i}" for i in range(MAX_TASKS_PER_CALL)])) == MAX_TASKS_PER_CALL
    error = refused(task_specs, "tasks", [f"/in/{i}" for i in range(MAX_TASKS_PER_CALL + 1)])
    assert str(MAX_TASKS_PER_CALL) in error.reason


def test_a_job_code_may_be_as_long_as_the_limit_and_holds_no_nul():
    assert job_code("c" * MAX_JOB_CODE, None, []) == "c" * MAX_JOB_CODE
    assert str(MAX_JOB_CODE) in refused(job_code, "c" * (MAX_JOB_CODE + 1), None, []).reason
    assert refused(job_code, "a\x00b", None, []).field == "code"


def test_the_identity_key_is_short_whatever_the_paths_and_path_strings_equal_path_objects():
    long_path = "/" + "p" * (MAX_PATH - 1)
    assert identity_key(long_path, None) == identity_key({"path": long_path}, None)
    assert identity_key(long_path, "/out") != identity_key(long_path, None)
    assert len(identity_key(long_path, long_path)) == len(identity_key("/a", None)) == 32


def test_a_job_listing_its_tasks_by_their_old_json_keys_still_finds_them_by_key():
    """Jobs created before keys were digests list the canonical JSON itself."""
    job = Job("old", "q", "INIT", None, None, None, {}, None)
    legacy_key = json.dumps([{"path": "/in/a"}, None], sort_keys=True)
    job.tasks = {"t1": {"uri": "0", "key": legacy_key, "size": -1, "status": "QUEUED"}}
    assert stored_key(legacy_key) == identity_key("/in/a", None)
    assert job.task_ids_by_key() == {identity_key("/in/a", None): "t1"}


# -- queues ----------------------------------------------------------------------


def test_tags_have_limits_on_their_number_keys_and_values():
    assert len(check_tags("tags", {f"k{i}": "v" for i in range(MAX_TAGS)})) == MAX_TAGS
    assert str(MAX_TAGS) in refused(check_tags, "tags", {f"k{i}": "v" for i in range(MAX_TAGS + 1)}).reason
    assert check_tags("tags", {"k" * MAX_TAG_KEY: "v" * MAX_TAG_VALUE})
    assert str(MAX_TAG_KEY) in refused(check_tags, "tags", {"k" * (MAX_TAG_KEY + 1): "v"}).reason
    error = refused(check_tags, "tags", {"team": "v" * (MAX_TAG_VALUE + 1)})
    assert (error.field, str(MAX_TAG_VALUE) in error.reason) == ("tags.team", True)
    assert refused(check_tags, "tags", {"team": "po\x00st"}).field == "tags.team"


# -- workers ---------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [1, 60, MAX_LEASE_SECONDS])
def test_a_lease_lasts_from_one_second_to_a_day(seconds):
    check_claim("w1", 1, seconds)


@pytest.mark.parametrize("seconds", [-10, 0, MAX_LEASE_SECONDS + 1, 1_000_000_000, 2.5, True, None])
def test_a_lease_time_outside_one_second_to_a_day_is_refused_with_the_limit(seconds):
    error = refused(check_claim, "w1", 1, seconds)
    assert error.field == "leaseSeconds"
    assert str(MAX_LEASE_SECONDS) in error.reason


@pytest.mark.parametrize(("limit", "accepted"), [(0, False), (1, True), (500, True), (501, False)])
def test_a_claim_takes_one_to_500_tasks(limit, accepted):
    if accepted:
        check_claim("w1", limit, 60)
    else:
        assert "500" in refused(check_claim, "w1", limit, 60).reason


@pytest.mark.parametrize("worker", ["", "  ", "w\x00", "w" * 256, 7])
def test_a_worker_is_named_by_a_short_storable_string(worker):
    assert refused(check_claim, worker, 1, 60).field == "worker"


def test_a_failure_text_keeps_what_a_store_cannot_hold_as_replacement_characters():
    assert error_text("exit 1\n\x00garbage \ud800") == "exit 1\n\ufffdgarbage \ufffd"


def test_a_long_failure_text_is_cut_in_the_middle_with_a_note_never_refused():
    assert error_text("e" * MAX_ERROR_TEXT) == "e" * MAX_ERROR_TEXT
    text = "command exited with 2\n" + "x" * 1_000_000 + "\nlast line of output"
    kept = error_text(text)
    assert len(kept) <= MAX_ERROR_TEXT
    assert kept.startswith("command exited with 2\n")
    assert kept.endswith("\nlast line of output")
    assert f"of {len(text)} characters cut" in kept
