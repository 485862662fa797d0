"""The one SQLite database of the agent.

WAL mode with synchronous=FULL: once a transaction commits, it survives a power cut.
Each subsystem creates its own tables through `ensure_schema`; the store knows none of
them, so blocks stay independent.

The database holds the Basic auth password, tokens and keys' whereabouts: the storage
directory is made 0700 and the database 0600 whatever the umask (the unit's UMask=0077
covers only the packaged service, not a `station-agent run` by hand). SQLite gives its
-wal and -shm files the database file's mode, so they follow.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

DB_NAME = "station-agent.db"
DIR_MODE = 0o700
FILE_MODE = 0o600
MEMORY = ":memory:"   # SQLite's name for a database without a file (tests)


class StoreError(Exception):
    """The database cannot be opened or used; the message names the file."""


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            if str(self.path) != MEMORY:
                make_private_dir(self.path.parent)
                _private_file(self.path)
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, nothing implicit.
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open database {self.path}: {exc}") from exc
        self._lock = threading.RLock()
        self._depth = 0

    @classmethod
    def in_dir(cls, directory: Path | str) -> "Store":
        return cls(Path(directory) / DB_NAME)

    def close(self) -> None:
        self._db.close()

    def ensure_schema(self, ddl: str) -> None:
        """Run CREATE ... IF NOT EXISTS statements (idempotent)."""
        with self._lock:
            self._db.executescript(ddl)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable unit of work; nested uses join the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")
            finally:
                self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self.transaction() as db:
            db.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        rows = self.query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else default

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self.execute("INSERT INTO meta(key, value) VALUES(?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def make_private_dir(path: Path) -> None:
    """Create `path` and any missing parents 0700 (exactly: mkdir's mode passes through
    the umask, so each new one is chmod-ed too). An existing directory keeps its mode:
    the package's 0750 state directory lets the agent's group reach the control socket."""
    missing = []
    for candidate in (path, *path.parents):
        if os.path.isdir(candidate):
            break
        missing.append(candidate)
    for directory in reversed(missing):
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise
            continue  # made meanwhile by someone else: theirs to keep as they made it
        os.chmod(directory, DIR_MODE)


def _private_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does (SQLite would make it 0644 minus
    the umask); tighten one an earlier version left looser, and its -wal and -shm."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            os.chmod(f"{path}{suffix}", FILE_MODE)
        except FileNotFoundError:
            pass
