"""The database holds the Basic auth password: 0600 files in a 0700 directory, whatever
the umask of whoever runs the agent by hand (the unit's UMask=0077 covers only the
packaged service)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path
from typing import Iterator

import pytest

from agent.store import DB_NAME, Store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask a user can have: every file world-readable unless made otherwise."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_database_and_its_directories_are_private_under_umask_0(tmp_path, open_umask):
    directory = tmp_path / "var" / "lib" / "station-agent"   # three levels made
    store = Store.in_dir(directory)
    try:
        store.set_meta("secret", "s3cret-password-0001")   # a write: -wal holds it
        files = [directory / DB_NAME, directory / f"{DB_NAME}-wal", directory / f"{DB_NAME}-shm"]
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        for level in (directory, directory.parent, directory.parent.parent):
            assert mode(level) == 0o700, level
    finally:
        store.close()


def test_a_database_an_earlier_version_left_readable_is_tightened(tmp_path, open_umask):
    directory = tmp_path / "state"
    directory.mkdir(mode=0o750)
    old = sqlite3.connect(directory / DB_NAME, isolation_level=None)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    old.execute("INSERT INTO t VALUES (1)")
    files = [directory / DB_NAME, directory / f"{DB_NAME}-wal", directory / f"{DB_NAME}-shm"]
    assert {mode(f) for f in files} == {0o644}   # SQLite's own default under umask 0
    store = Store.in_dir(directory)
    try:
        assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert store.query("SELECT x FROM t") == [(1,)]
        # The package's state directory is 0750 on purpose (the control socket's group
        # reaches it): an existing directory keeps its mode.
        assert mode(directory) == 0o750
    finally:
        store.close()
        old.close()


def test_an_in_memory_store_makes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Store(":memory:").close()
    assert os.listdir(tmp_path) == []
