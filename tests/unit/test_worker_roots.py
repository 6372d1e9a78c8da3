"""What a worker may touch: its --root folders only, judged on real paths (no `..`, no link,
no /data2 passing for /data), and commands only with --allow-commands and the queue's
consent. Every refusal says why and what to do; nothing is read, written or run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from worker import execute
from worker.policy import BadRoot, Policy, Refused


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A root with a file in it, beside a folder outside it holding a secret."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "in.txt").write_text("inside")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    return root


def refusal(policy: Policy, path: Path | str, role: str = "source") -> str:
    with pytest.raises(Refused) as refused:
        policy.check_path(path, role)
    message = str(refused.value)
    assert message.startswith("refused: "), message
    return message


def nothing_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*")) if folder.exists() else []


# -- the path check --------------------------------------------------------------------------


def test_a_source_and_a_new_destination_inside_a_root_are_allowed(data):
    policy = Policy.of(roots=[data])
    policy.check_path(data / "in.txt", "source")
    policy.check_path(data / "out" / "not" / "yet" / "made.txt", "destination")
    policy.check_path(data, "source")  # the root itself


def test_dot_dot_cannot_climb_out_of_a_root(data):
    policy = Policy.of(roots=[data])
    escape = f"{data}/../outside/secret"
    message = refusal(policy, escape)
    assert f"source {escape} (it resolves to {data.parent / 'outside' / 'secret'})" in message
    assert f"outside the worker's roots ({data})" in message
    refusal(policy, f"{data}/sub/../../outside/new.txt", "destination")
    policy.check_path(f"{data}/sub/../in.txt", "source")  # `..` that stays inside is fine


def test_a_link_inside_a_root_cannot_lead_a_source_out(data):
    (data / "innocent.txt").symlink_to(data.parent / "outside" / "secret")
    (data / "folder").symlink_to(data.parent / "outside")
    policy = Policy.of(roots=[data])
    assert "resolves to" in refusal(policy, data / "innocent.txt")
    refusal(policy, data / "folder" / "secret")


def test_a_link_inside_a_root_cannot_lead_a_destination_out(data):
    (data / "drop").symlink_to(data.parent / "outside")  # a folder link, the file not there yet
    (data / "dangling.txt").symlink_to(data.parent / "outside" / "not-yet")  # a link to a file to be
    policy = Policy.of(roots=[data])
    message = refusal(policy, data / "drop" / "new.txt", "destination")
    assert message.startswith(f"refused: destination {data / 'drop' / 'new.txt'} (it resolves to")
    refusal(policy, data / "drop" / "deeper" / "new.txt", "destination")
    refusal(policy, data / "dangling.txt", "destination")


def test_a_root_is_a_folder_not_a_prefix(tmp_path):
    root, neighbour = tmp_path / "data", tmp_path / "data2"
    root.mkdir()
    neighbour.mkdir()
    (neighbour / "f").write_text("x")
    policy = Policy.of(roots=[root])
    refusal(policy, neighbour / "f")
    refusal(policy, f"{root}2/new", "destination")
    refusal(policy, f"{root}-backup/f")


def test_a_worker_without_roots_refuses_every_file(data):
    message = refusal(Policy(), data / "in.txt")
    assert "start it with --root DIR" in message


def test_roots_are_real_paths_and_must_be_folders(data, tmp_path):
    (tmp_path / "via").symlink_to(data)
    policy = Policy.of(roots=[tmp_path / "via", data])
    assert policy.roots == (data.resolve(),)  # one root, by its real path
    policy.check_path(tmp_path / "via" / "in.txt", "source")
    with pytest.raises(BadRoot, match="is not an existing folder"):
        Policy.of(roots=[tmp_path / "missing"])
    with pytest.raises(BadRoot):
        Policy.of(roots=[data / "in.txt"])


def test_several_roots_and_the_filesystem_root(data, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    policy = Policy.of(roots=[data, other])
    policy.check_path(other / "x", "destination")
    assert f"roots ({data}, {other})" in refusal(policy, tmp_path / "outside" / "secret")
    Policy.of(roots=["/"]).check_path(tmp_path / "outside" / "secret", "source")


def test_the_worker_says_what_it_allows():
    assert Policy().describe() == [
        "command tasks: refused (start the worker with --allow-commands to run them)",
        "transfers: refused (start the worker with --root DIR to allow them under DIR)",
    ]
    said = Policy.of(True, ["/"]).describe()
    assert said == ["command tasks: allowed, for queues whose group allows them", "transfers: under / only"]


# -- transfers and commands, as the worker runs them -------------------------------------------


def transfer(source: Path | str, destination: Path | str) -> execute.Work:
    return execute.Work("transfer", str(source), str(destination))


def no_report(done: int, total: int) -> None:
    pass


def test_a_transfer_inside_the_roots_runs(data):
    result = execute.run(transfer(data / "in.txt", data / "out" / "copy.txt"), Policy.of(roots=[data]), no_report)
    assert (data / "out" / "copy.txt").read_text() == "inside" and result["files"] == 1


def test_a_transfer_out_of_the_roots_writes_nothing(data, tmp_path):
    outside = tmp_path / "outside"
    policy = Policy.of(roots=[data])
    with pytest.raises(Refused, match=r"source .* is outside the worker's roots"):
        execute.run(transfer(outside / "secret", data / "stolen.txt"), policy, no_report)
    with pytest.raises(Refused, match=r"destination .* is outside the worker's roots"):
        execute.run(transfer(data / "in.txt", outside / "planted.txt"), policy, no_report)
    assert not (data / "stolen.txt").exists() and not (outside / "planted.txt").exists()


def test_a_folder_with_a_link_out_of_the_roots_is_refused_before_any_file_is_copied(data, tmp_path):
    folder = data / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "z.txt").symlink_to(tmp_path / "outside" / "secret")  # copied last, checked first
    with pytest.raises(Refused, match=r"z\.txt"):
        execute.run(transfer(folder, data / "copy"), Policy.of(roots=[data]), no_report)
    assert nothing_under(data / "copy") == []


def test_a_folder_copied_over_a_link_out_of_the_roots_is_refused(data, tmp_path):
    folder = data / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f.txt").write_text("f")
    (data / "copy").mkdir()
    (data / "copy" / "sub").symlink_to(tmp_path / "outside")  # the copy's subfolder leads out
    with pytest.raises(Refused, match="destination"):
        execute.run(transfer(folder, data / "copy"), Policy.of(roots=[data]), no_report)
    assert not (tmp_path / "outside" / "f.txt").exists()


def test_a_planted_partial_file_link_is_not_written_through(data, tmp_path):
    victim = tmp_path / "outside" / "secret"
    (data / ".copy.txt.jobledger-partial").symlink_to(victim)
    execute.run(transfer(data / "in.txt", data / "copy.txt"), Policy.of(roots=[data]), no_report)
    assert victim.read_text() == "secret" and (data / "copy.txt").read_text() == "inside"


def command(marker: Path, queue_allows: bool) -> execute.Work:
    return execute.Work("command", {"kind": "command", "command": f"touch {marker}"}, None, "ops", queue_allows)


def test_a_command_needs_the_workers_and_the_queues_consent(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(Refused) as refused:
        execute.run(command(marker, queue_allows=True), Policy(), no_report)
    assert str(refused.value) == "refused: command tasks need a worker started with --allow-commands"
    with pytest.raises(Refused) as refused:
        execute.run(command(marker, queue_allows=False), Policy(allow_commands=True), no_report)
    assert str(refused.value).startswith("refused: queue ops does not allow command tasks: ask a site admin")
    assert not marker.exists()
    execute.run(command(marker, queue_allows=True), Policy(allow_commands=True), no_report)
    assert marker.exists()


def test_a_transfer_of_a_worker_without_roots_is_refused_whatever_it_names(tmp_path):
    with pytest.raises(Refused, match="--root DIR"):
        execute.run(transfer(os.devnull, tmp_path / "x"), Policy(allow_commands=True), no_report)
    assert not (tmp_path / "x").exists()
