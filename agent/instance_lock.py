"""One agent per storage directory, and so per station.

Two agents on one station would drive the same relays and fight over the same database
and control socket. `station-agent run` takes an exclusive lock on
`<storage.dir>/station-agent.lock` before anything else (before the database is opened
and before any hardware is touched) and holds it for the life of the process. flock,
not a PID file: the kernel drops the lock when the process dies however it dies (kill
-9, a power cut), so a stale lock never keeps a station from starting. The descriptor
is not inherited: a firmware re-exec releases the lock and the new program takes it
again, and the install command run by the agent never holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from agent.store import make_private_dir

LOCK_NAME = "station-agent.lock"


class AlreadyRunning(Exception):
    """Another agent holds the storage directory; str() is the one line to print."""


class InstanceLock:
    def __init__(self, fd: int, path: Path) -> None:
        self._fd = fd
        self.path = path

    @classmethod
    def acquire(cls, directory: Path) -> "InstanceLock":
        """The lock of this storage directory, or AlreadyRunning naming who holds it.
        OSError when the directory cannot be made or the file opened."""
        make_private_dir(directory)
        path = directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _holder(path)
            raise AlreadyRunning(
                f"another station-agent{f' (pid {holder})' if holder else ''} already runs "
                f"with storage.dir {directory}; one agent per station: stop it first "
                "(systemctl stop station-agent)") from None
        except BaseException:
            os.close(fd)
            raise
        # Who holds it, for the next one's message (the lock itself is the flock).
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(fd, path)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _holder(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return text if text.isdigit() else None
