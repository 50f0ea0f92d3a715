"""The record a running ``sqsbus local`` leaves for the operator commands: private, owned by this
user, and trusted only while the very process that wrote it runs."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sqsbus.local import record
from sqsbus.local.record import clear_record, read_record, write_record

URL = "http://127.0.0.1:9"
BROKER_URL = "sqsbus://t:t@127.0.0.1:9"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"SQSBUS_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that is not a ``sqsbus local``."""
    process = subprocess.Popen(["sleep", "60"])
    yield process
    process.kill()
    process.wait()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def rewrite(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(changes)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_record_is_private_from_the_start(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    modes_when_renamed: list[int] = []
    replace = os.replace

    def spy(source: Any, target: Any) -> None:
        modes_when_renamed.append(mode(Path(source)))
        replace(source, target)

    monkeypatch.setattr(os, "replace", spy)
    path = write_record(URL, BROKER_URL, env)
    monkeypatch.undo()

    assert modes_when_renamed == [0o600]  # written under a private name, already 0600
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left


def test_record_owned_by_another_user_is_ignored(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_record(URL, BROKER_URL, env)
    if os.getuid() == 0:
        os.chown(path, 65534, -1)  # as if another user had planted it
    else:
        monkeypatch.setattr(record, "_current_uid", lambda: os.getuid() + 1)
    assert read_record(env) is None
    warning = capsys.readouterr().err
    assert str(path) in warning
    assert "owned by uid" in warning
    assert path.exists()  # someone else's file: left alone


@pytest.mark.parametrize("loose_mode", [0o620, 0o602], ids=["group-writable", "world-writable"])
def test_writable_by_others_record_is_ignored(
    env: dict[str, str], loose_mode: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_record(URL, BROKER_URL, env)
    path.chmod(loose_mode)
    assert read_record(env) is None
    warning = capsys.readouterr().err
    assert str(path) in warning
    assert "writable" in warning


def test_symbolic_link_is_not_followed(
    env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_record(URL, BROKER_URL, env)
    elsewhere = path.rename(tmp_path / "elsewhere.json")
    path.symlink_to(elsewhere)
    assert read_record(env) is None
    assert f"ignoring {path}: a symbolic link" in capsys.readouterr().err


def test_reused_pid_is_not_trusted(
    env: dict[str, str], other_process: subprocess.Popen[bytes]
) -> None:
    path = write_record(URL, BROKER_URL, env)
    rewrite(path, pid=other_process.pid, identity="another boot:1")
    assert read_record(env) is None
    assert not path.exists()  # stale: removed


def test_process_identity_tells_processes_apart(
    other_process: subprocess.Popen[bytes],
) -> None:
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc: records are checked by probing their endpoint")
    mine = record._process_identity(os.getpid())
    assert mine is not None
    assert mine == record._process_identity(os.getpid())
    assert record._process_identity(other_process.pid) not in (None, mine)


def test_without_process_identity_the_endpoint_must_answer(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(record, "_process_identity", lambda pid: None)  # as on macOS
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        path = write_record(f"http://127.0.0.1:{port}", BROKER_URL, env)
        found = read_record(env)
        assert found is not None and found.url == f"http://127.0.0.1:{port}"
    assert read_record(env) is None  # the endpoint no longer answers
    assert path.exists()


def test_newest_live_record_wins_and_clearing_removes_only_ours(
    env: dict[str, str], other_process: subprocess.Popen[bytes]
) -> None:
    older = write_record(URL, BROKER_URL, env)
    identity = record._process_identity(other_process.pid)
    theirs = older.with_name(f"local-endpoint-{other_process.pid}.json")
    older.rename(theirs)  # as if written by other_process, a second `sqsbus local`
    rewrite(theirs, pid=other_process.pid, identity=identity, url="http://theirs:1")
    if identity is None:
        pytest.skip("no /proc: a live record is one whose endpoint answers")

    mine = write_record(URL, BROKER_URL, env)
    assert [found.url for found in record.read_records(env)] == [URL, "http://theirs:1"]
    clear_record(env)
    assert not mine.exists()
    found = read_record(env)
    assert found is not None and found.url == "http://theirs:1"
