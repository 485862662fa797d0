"""Reading the file an upload sends: the same rules for every protocol."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Iterator

from agent.transfer.errors import INCOMPLETE, NOT_FOUND, Failure
from agent.transfer.partfile import CHUNK
from agent.transfer.worker import Cancel


def open_source(source: Path) -> BinaryIO:
    try:
        return open(source, "rb")
    except OSError as exc:
        raise _unreadable(source, exc) from None


def chunks(stream: BinaryIO, source: Path, size: int, cancel: Cancel) -> Iterator[bytes]:
    """`size` bytes of the file (its size when the upload started), in CHUNK pieces, the
    cancel flag checked before each; a file that shrinks meanwhile is Incomplete."""
    sent = 0
    while sent < size:
        cancel.check()
        try:
            chunk = stream.read(min(CHUNK, size - sent))
        except OSError as exc:
            raise _unreadable(source, exc) from None
        if not chunk:
            raise Failure(INCOMPLETE, f"the local file {source} shrank while being sent "
                                      f"({sent} of {size} bytes)")
        sent += len(chunk)
        yield chunk


def _unreadable(source: Path, exc: OSError) -> Failure:
    return Failure(NOT_FOUND, f"cannot read the local file {source}: {exc.strerror or exc}")
