"""The agent's own log file (bounded, rotating, one UTC timestamp per record), and how
records reach stderr.

Why a file besides the journal: GetLog DiagnosticsLog (N01) uploads what the agent logged
in a time window, and the journal is neither ours to read (permissions, other units) nor
there on a developer's laptop. Why these rules:
- Bounded: `backups + 1` files of at most `max_bytes` each, whatever is logged; a record
  too large for one file is cut (a frame dump must not grow the flash use).
- Every record starts with `2026-12-03T07:05:34.123Z`: UTC with milliseconds, fixed width,
  so a window of time is found without knowing the station's time zone. Lines that do not
  start so (tracebacks, multi-line messages) belong to the record above them.
- 0600 files in a 0700 directory: a log may name tokens, URLs and peers.

On stderr (`console_handler`) a record gets the same timestamp, except under journald,
which stamps each line itself: there a record starts with its syslog priority instead
(`<4>` for a warning), which journald takes as the entry's level and strips, so
`journalctl -p warning` finds the agent's warnings.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Iterator, Mapping

LOG_NAME = "agent.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
# logging level -> syslog priority (sd-daemon(3)'s <N> prefixes).
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4),
               (logging.INFO, 6))
MIN_BYTES = 512
_CUT = " [... record cut to fit the log file]"
_ENCODING = "utf-8"
_ERRORS = "backslashreplace"
# The fixed-width stamp every record starts with, then a space.
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
_STAMP_LEN = 24


def utc_stamp(value: datetime) -> str:
    """`value` as the log file writes it: UTC, milliseconds, 'Z'."""
    value = value.astimezone(timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


class UtcFormatter(logging.Formatter):
    """FORMAT with the record's time in UTC; records longer than `limit` bytes are cut
    (None: never)."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__(FORMAT)
        self.limit = limit

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_stamp(datetime.fromtimestamp(record.created, timezone.utc))

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if self.limit is None:
            return text
        data = text.encode(_ENCODING, _ERRORS)
        if len(data) <= self.limit:
            return text
        keep = self.limit - len(_CUT.encode(_ENCODING))
        return data[:keep].decode(_ENCODING, "ignore") + _CUT


class _LogFileHandler(logging.handlers.RotatingFileHandler):
    """RotatingFileHandler that creates its files 0600 and counts bytes, not characters,
    so no file ever exceeds maxBytes (the stdlib's check counts characters)."""

    def _open(self) -> IO[str]:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.fchmod(fd, 0o600)
            return os.fdopen(fd, "a", encoding=_ENCODING, errors=_ERRORS)
        except BaseException:
            os.close(fd)
            raise

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 - stdlib name
        if self.stream is None:
            self.stream = self._open()
        size = len((self.format(record) + self.terminator).encode(_ENCODING, _ERRORS))
        position = self.stream.tell()
        return position > 0 and position + size > self.maxBytes


def attach_log_file(directory: Path, *, max_bytes: int = 1_000_000,
                    backups: int = 4) -> logging.Handler:
    """Log the root logger's records to `<directory>/agent.log` as well, rotated into
    agent.log.1 .. agent.log.<backups>. Returns the handler, for removeHandler/close."""
    if max_bytes < MIN_BYTES:
        raise ValueError(f"log file size limit must be at least {MIN_BYTES} bytes, "
                         f"not {max_bytes}")
    if backups < 1:
        raise ValueError(f"log file backups must be at least 1, not {backups}")
    directory = Path(directory)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    handler = _LogFileHandler(directory / LOG_NAME, maxBytes=max_bytes, backupCount=backups,
                              encoding=_ENCODING, errors=_ERRORS)
    # The terminator is one more byte per record.
    handler.setFormatter(UtcFormatter(max_bytes - len(handler.terminator)))
    logging.getLogger().addHandler(handler)
    return handler


class JournalFormatter(logging.Formatter):
    """JOURNAL_FORMAT behind the record's syslog priority; no time (journald adds it)."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in _PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{super().format(record)}"


def under_journald(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """Whether `stream` is the journal's: systemd puts "<device>:<inode>" of the stream it
    connected in JOURNAL_STREAM (systemd.exec(5)). The variable is inherited by children
    whose stderr may go elsewhere (a pipe, a file), so the stream itself must match."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file behind it (a test's StringIO)
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def console_handler(stream: IO[str], environ: Mapping[str, str]) -> logging.Handler:
    """The handler for `run`'s stderr: timestamps unless journald stamps the lines."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JournalFormatter() if under_journald(stream, environ)
                         else UtcFormatter())
    return handler


def log_files(directory: Path) -> list[Path]:
    """agent.log.N .. agent.log.1, agent.log that exist: oldest first."""
    directory = Path(directory)
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    backups = sorted((int(name[len(LOG_NAME) + 1:]), name) for name in names
                     if name.startswith(LOG_NAME + ".") and name[len(LOG_NAME) + 1:].isdigit())
    files = [directory / name for _, name in reversed(backups)]
    if LOG_NAME in names:
        files.append(directory / LOG_NAME)
    return files


def record_time(line: str) -> datetime | None:
    """The timestamp a record's first line starts with; None for a continuation line."""
    if not _STAMP.match(line):
        return None
    try:
        return datetime.fromisoformat(line[:_STAMP_LEN - 1] + "+00:00")
    except ValueError:
        return None


def _utc(value: datetime | None) -> datetime | None:
    # A naive bound is taken as UTC: the agent knows no other time zone.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


def read_lines(directory: Path, oldest: datetime | None,
               latest: datetime | None) -> Iterator[str]:
    """The lines (without line ends) of the records logged within [oldest, latest] (either
    bound may be None), oldest file first; continuation lines come with their record.

    All files are opened before the first is read: a rotation meanwhile renames them, and
    an open file is still the same file."""
    oldest, latest = _utc(oldest), _utc(latest)
    streams: list[IO[str]] = []
    try:
        for path in log_files(directory):
            try:
                streams.append(open(path, encoding=_ENCODING, errors="replace"))
            except FileNotFoundError:
                continue  # rotated away between the listing and the open
        keep = False  # continuation lines before any record: their record is gone
        for stream in streams:
            for line in stream:
                line = line.rstrip("\n")
                when = record_time(line)
                if when is not None:
                    keep = ((oldest is None or when >= oldest)
                            and (latest is None or when <= latest))
                if keep:
                    yield line
    finally:
        for stream in streams:
            stream.close()
