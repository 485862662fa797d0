"""The agent's own log file (agent/logfile.py): UTC-stamped records, bounded rotation,
0600/0700, and reading a time window back across the rotated files."""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import pytest

from agent.logfile import LOG_NAME, attach_log_file, log_files, read_lines, record_time

STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ")
T0 = datetime(2026, 12, 3, 7, 5, 34, 123000, tzinfo=timezone.utc)


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    # Records propagate to the root logger's handlers whatever the root's own level.
    lg = logging.getLogger("agent.test_logfile")
    old = lg.level
    lg.setLevel(logging.DEBUG)
    yield lg
    lg.setLevel(old)


@pytest.fixture
def attached(tmp_path: Path):
    handlers: list[logging.Handler] = []

    def attach(**kwargs) -> logging.Handler:
        handler = attach_log_file(tmp_path / "log", **kwargs)
        handlers.append(handler)
        return handler

    yield attach
    for handler in handlers:
        logging.getLogger().removeHandler(handler)
        handler.close()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def emit_at(handler: logging.Handler, when: datetime, message: str,
            level: int = logging.INFO, name: str = "agent.ocpp.connection") -> None:
    record = logging.LogRecord(name, level, __file__, 1, message, None, None)
    record.created = when.timestamp()
    handler.handle(record)


# -- the line format -------------------------------------------------------------------------

def test_a_record_starts_with_its_utc_time_in_milliseconds(attached, tmp_path, monkeypatch):
    # A station in another time zone still writes UTC.
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        handler = attached()
        emit_at(handler, T0, "connected")
        handler.flush()
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    text = (tmp_path / "log" / LOG_NAME).read_text()
    assert text == "2026-12-03T07:05:34.123Z INFO agent.ocpp.connection: connected\n"
    assert record_time(text) == T0


def test_records_through_the_root_logger_and_tracebacks_follow(attached, tmp_path, logger):
    handler = attached()
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    logger.warning("first %s", "message")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logger.exception("it failed")
    handler.flush()
    lines = (tmp_path / "log" / LOG_NAME).read_text().splitlines()
    assert STAMP.match(lines[0]) and lines[0].endswith(
        " WARNING agent.test_logfile: first message")
    assert STAMP.match(lines[1]) and lines[1].endswith(" ERROR agent.test_logfile: it failed")
    assert lines[2] == "Traceback (most recent call last):"
    assert lines[-1] == "RuntimeError: boom"
    assert not any(STAMP.match(line) for line in lines[2:])
    stamped = record_time(lines[0])
    assert stamped is not None and before <= stamped <= datetime.now(timezone.utc)
    # The whole exception is read back with its record.
    assert list(read_lines(tmp_path / "log", None, None)) == lines


def test_the_handler_can_be_removed(attached, tmp_path, logger):
    handler = attached()
    assert handler in logging.getLogger().handlers
    logging.getLogger().removeHandler(handler)
    logger.warning("not in the file")
    handler.flush()
    assert (tmp_path / "log" / LOG_NAME).read_text() == ""


# -- rotation and bounds ------------------------------------------------------------------------

def test_rotation_keeps_backups_plus_one_files_each_under_the_limit(attached, tmp_path, logger):
    handler = attached(max_bytes=1024, backups=2)
    for i in range(300):
        logger.info("record %04d %s", i, "x" * 40)
    handler.flush()
    names = sorted(p.name for p in (tmp_path / "log").iterdir())
    assert names == [LOG_NAME, LOG_NAME + ".1", LOG_NAME + ".2"]
    for path in (tmp_path / "log").iterdir():
        assert 0 < path.stat().st_size <= 1024
    # Oldest file first, the records in order and without a gap up to the last one.
    numbers = [int(line.split("record ")[1][:4])
               for line in read_lines(tmp_path / "log", None, None)]
    assert numbers == list(range(numbers[0], 300))
    assert len(numbers) > 20


def test_sizes_are_counted_in_bytes_and_a_huge_record_is_cut(attached, tmp_path, logger):
    handler = attached(max_bytes=1024, backups=1)
    for i in range(40):
        logger.info("€uro %d %s", i, "€" * 30)   # 3 bytes a character in UTF-8
    logger.error("dump: %s", "y" * 10_000)
    handler.flush()
    for path in (tmp_path / "log").iterdir():
        assert path.stat().st_size <= 1024
    last = (tmp_path / "log" / LOG_NAME).read_text(encoding="utf-8").splitlines()[-1]
    assert "dump: yyy" in last and last.endswith("[... record cut to fit the log file]")


def test_files_are_0600_in_a_0700_directory_also_after_rotation(attached, tmp_path, logger):
    directory = tmp_path / "log"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    (directory / LOG_NAME).write_text("")
    os.chmod(directory / LOG_NAME, 0o644)
    old_umask = os.umask(0o022)
    try:
        handler = attached(max_bytes=600, backups=2)
        assert mode(directory) == 0o700
        assert mode(directory / LOG_NAME) == 0o600
        for i in range(40):
            logger.info("record %d %s", i, "z" * 50)
        handler.flush()
    finally:
        os.umask(old_umask)
    files = list(directory.iterdir())
    assert len(files) == 3
    assert all(mode(path) == 0o600 for path in files)


def test_a_new_directory_is_made_0700(attached, tmp_path):
    attached()
    assert mode(tmp_path / "log") == 0o700
    assert mode(tmp_path / "log" / LOG_NAME) == 0o600


@pytest.mark.parametrize("kwargs", [{"max_bytes": 100}, {"backups": 0}])
def test_limits_that_cannot_bound_the_log_are_refused(tmp_path, kwargs):
    with pytest.raises(ValueError):
        attach_log_file(tmp_path / "log", **kwargs)


# -- reading a window back ------------------------------------------------------------------------

def stamp(minutes: float) -> str:
    when = T0 + timedelta(minutes=minutes)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


@pytest.fixture
def rotated(tmp_path: Path) -> Path:
    """Three files as rotation leaves them: agent.log.2 the oldest, agent.log the newest."""
    directory = tmp_path / "log"
    directory.mkdir()
    (directory / "agent.log.2").write_text(
        f"{stamp(0)} INFO a: one\n"
        f"{stamp(1)} ERROR a: two failed\n"
        "Traceback (most recent call last):\n"
        "ValueError: two\n")
    (directory / "agent.log.1").write_text(
        f"{stamp(2)} INFO a: three\n"
        f"{stamp(3)} INFO a: four\n"
        "  continued four\n")
    (directory / LOG_NAME).write_text(
        f"{stamp(4)} INFO a: five\n"
        f"{stamp(5)} WARNING a: six\n")
    (directory / "agent.log.old").write_text(f"{stamp(2.5)} INFO a: not a rotation\n")
    return directory


def messages(lines) -> list[str]:
    return [line.rsplit(": ", 1)[-1] if record_time(line) else "+" + line for line in lines]


def test_read_lines_in_order_across_files(rotated):
    assert [p.name for p in log_files(rotated)] == ["agent.log.2", "agent.log.1", LOG_NAME]
    assert messages(read_lines(rotated, None, None)) == [
        "one", "two failed", "+Traceback (most recent call last):", "+ValueError: two",
        "three", "four", "+  continued four", "five", "six"]


def test_read_lines_keeps_the_window_with_its_continuation_lines(rotated):
    window = list(read_lines(rotated, T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)))
    assert messages(window) == ["two failed", "+Traceback (most recent call last):",
                                "+ValueError: two", "three", "four", "+  continued four"]
    # Bounds are inclusive, to the millisecond.
    assert messages(read_lines(rotated, T0 + timedelta(minutes=4),
                               T0 + timedelta(minutes=4))) == ["five"]
    assert messages(read_lines(rotated, T0 + timedelta(minutes=4, microseconds=1000),
                               None)) == ["six"]
    # A record outside the window takes its continuation lines with it.
    assert messages(read_lines(rotated, T0 + timedelta(minutes=1, seconds=30),
                               T0 + timedelta(minutes=2))) == ["three"]
    assert messages(read_lines(rotated, None, T0)) == ["one"]
    assert list(read_lines(rotated, T0 + timedelta(days=1), None)) == []


def test_read_lines_takes_naive_bounds_as_utc(rotated):
    naive = (T0 + timedelta(minutes=5)).replace(tzinfo=None)
    assert messages(read_lines(rotated, naive, None)) == ["six"]


def test_continuation_lines_without_their_record_are_dropped(tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    (directory / LOG_NAME).write_text(f"  orphan\n{stamp(0)} INFO a: one\n")
    assert messages(read_lines(directory, None, None)) == ["one"]


def test_no_log_directory_reads_as_nothing(tmp_path):
    assert list(read_lines(tmp_path / "missing", None, None)) == []


# -- stderr: timestamps, except where journald stamps the lines itself -------------------------

def _record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("agent.daemon", level, __file__, 1, message, None, None)


def _journal_of(stream) -> dict[str, str]:
    info = os.fstat(stream.fileno())
    return {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}


def test_journald_is_recognised_only_on_the_stream_it_names(tmp_path):
    from agent.logfile import under_journald
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        env = _journal_of(journal)
        assert under_journald(journal, env)
        # The variable is inherited by children whose stderr goes elsewhere.
        assert not under_journald(other, env)
        assert not under_journald(journal, {})
        for bad in ("", "12", "12:", ":34", "a:b", "12:34:56"):
            assert not under_journald(journal, {"JOURNAL_STREAM": bad}), bad
    import io
    assert not under_journald(io.StringIO(), {"JOURNAL_STREAM": "1:2"})   # no file behind it


def test_stderr_records_carry_a_utc_timestamp_off_the_journal(tmp_path, monkeypatch):
    from agent.logfile import console_handler
    monkeypatch.setattr(time, "time", lambda: T0.timestamp())
    with open(tmp_path / "stderr", "w+") as stream:
        handler = console_handler(stream, {"JOURNAL_STREAM": "1:2"})
        handler.emit(_record(logging.INFO, "station-agent 1.0 starting"))
        handler.emit(_record(logging.WARNING, "x" * 5000))   # never cut on stderr
        handler.flush()
        stream.seek(0)
        lines = stream.read().splitlines()
    assert lines[0] == "2026-12-03T07:05:34.123Z INFO agent.daemon: station-agent 1.0 starting"
    assert lines[1] == "2026-12-03T07:05:34.123Z WARNING agent.daemon: " + "x" * 5000


def test_under_journald_records_carry_their_priority_and_no_timestamp(tmp_path):
    from agent.logfile import console_handler
    with open(tmp_path / "journal", "w+") as stream:
        handler = console_handler(stream, _journal_of(stream))
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR,
                      logging.CRITICAL):
            handler.emit(_record(level, "m"))
        handler.flush()
        stream.seek(0)
        lines = stream.read().splitlines()
    # sd-daemon(3) priorities; journald takes the prefix as the level and strips it.
    assert lines == ["<7>DEBUG agent.daemon: m", "<6>INFO agent.daemon: m",
                     "<4>WARNING agent.daemon: m", "<3>ERROR agent.daemon: m",
                     "<2>CRITICAL agent.daemon: m"]
