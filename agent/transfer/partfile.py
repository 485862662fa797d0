"""The file being downloaded: `<dest>.part`, hashed as it grows, renamed only when whole.

A station may lose power in the middle of a firmware download; whatever is at `dest`
must then be a complete file (or nothing), and the next attempt should not fetch again
what is already on disk. So bytes go to the .part file, the rename happens after fsync,
and a kept .part is re-hashed on resume so the SHA-256 is always of the whole file.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from agent.transfer.errors import NO_SPACE, TOO_LARGE, Failure
from agent.transfer.worker import Cancel

CHUNK = 64 * 1024
SPACE_MARGIN = 1024 * 1024   # left free for the database and the logs
_SPACE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str   # hex digest of the whole file


class PartFile:
    def __init__(self, dest: Path, max_bytes: int | None, cancel: Cancel) -> None:
        self.dest = dest
        self.path = dest.with_name(dest.name + ".part")
        self.size = 0
        self._max = max_bytes
        self._cancel = cancel
        self._hash = hashlib.sha256()
        self._file: BinaryIO | None = None

    def open(self, resume: bool) -> None:
        """Open the .part, keeping and hashing what is there when resuming."""
        try:
            if resume and self.path.is_file():
                self._file = open(self.path, "r+b")
                self._rehash()
                if self._max is not None and self.size > self._max:
                    self.restart()
            else:
                self._file = open(self.path, "wb")
        except OSError as exc:
            raise _local_failure(self.path, exc) from None

    def _rehash(self) -> None:
        assert self._file is not None
        self._file.seek(0)
        while chunk := self._file.read(CHUNK):
            self._cancel.check()
            self._hash.update(chunk)
            self.size += len(chunk)

    def restart(self) -> None:
        """Throw away what is there: the server sends the file from its first byte."""
        assert self._file is not None
        try:
            self._file.seek(0)
            self._file.truncate()
        except OSError as exc:
            raise _local_failure(self.path, exc) from None
        self._hash = hashlib.sha256()
        self.size = 0

    def announce(self, total: int | None) -> None:
        """The server said how big the whole file is: refuse before writing a byte if it
        cannot fit under max_bytes or on the file system."""
        if total is None:
            return
        if self._max is not None and total > self._max:
            raise Failure(TOO_LARGE, f"the file is {total} bytes, more than the "
                                     f"{self._max} allowed")
        needed = total - self.size
        free = shutil.disk_usage(self.path.parent).free - SPACE_MARGIN
        if needed > free:
            raise Failure(NO_SPACE, f"the file needs {needed} more bytes but only "
                                    f"{max(free, 0)} are free in {self.path.parent} "
                                    f"(keeping {SPACE_MARGIN} in reserve)")

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        if self._max is not None and self.size + len(chunk) > self._max:
            raise Failure(TOO_LARGE, f"the server sent more than the {self._max} bytes "
                                     "allowed")
        try:
            self._file.write(chunk)
        except OSError as exc:
            raise _local_failure(self.path, exc) from None
        self._hash.update(chunk)
        self.size += len(chunk)

    def finish(self) -> Downloaded:
        """fsync, rename to dest, fsync the directory: after this returns, a power cut
        leaves the whole file at dest."""
        assert self._file is not None
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.replace(self.path, self.dest)
            _fsync_dir(self.dest.parent)
        except OSError as exc:
            raise _local_failure(self.dest, exc) from None
        return Downloaded(path=self.dest, size=self.size, sha256=self._hash.hexdigest())

    def abandon(self, keep: bool) -> None:
        """Close after a failure; keep the .part for a resume unless told not to, or
        there is nothing in it worth resuming."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if not keep or self.size == 0:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            except OSError:
                pass  # best effort: the next attempt truncates or resumes it anyway


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _local_failure(path: Path, exc: OSError) -> Failure:
    """Local storage that cannot take the file is NoSpace whatever the errno: the server
    is not to blame and a retry will not help until someone looks at the disk."""
    if exc.errno in _SPACE_ERRNOS:
        return Failure(NO_SPACE, f"no space left on the device for {path}")
    return Failure(NO_SPACE, f"cannot write {path}: {exc.strerror or exc}")
