"""The file GetLog uploads (N01): a tar.gz made of what was logged in a time window.

Kept apart from the block because it is plain blocking file work (the block runs it in a
thread) and testable without any OCPP around it. The archive is bounded by what it is made
of: the rotating agent log (agent/logfile.py) and the bounded security log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

if TYPE_CHECKING:
    import tarfile

from agent.clock import format_datetime

DIAGNOSTICS_LOG = "DiagnosticsLog"
SECURITY_LOG = "SecurityLog"
LOG_TYPES = (DIAGNOSTICS_LOG, SECURITY_LOG)
# The name of each log inside the archive.
MEMBER = {DIAGNOSTICS_LOG: "agent.log", SECURITY_LOG: "security.log"}
INFO = "info.txt"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

Lines = Callable[[datetime | None, datetime | None], Iterable[str]]
Text = Callable[[datetime | None, datetime | None], str]


@dataclass(frozen=True)
class LogRequest:
    """What one GetLog asks for."""

    request_id: int
    log_type: str
    oldest: datetime | None
    latest: datetime | None


def archive_name(station_id: str, log_type: str, when: datetime) -> str:
    """`CS-001-DiagnosticsLog-20261203T070534Z.tar.gz`: whose, what and when, safe as a
    file name on any server (anything but letters, digits, '.', '_', '-' becomes '_')."""
    stamp = format_datetime(when)
    stamp = stamp[:4] + stamp[5:7] + stamp[8:13] + stamp[14:16] + stamp[17:19] + "Z"
    # An OCPP identity is at most 48 characters; the cut only guards the 255 of the field.
    return f"{_UNSAFE.sub('_', station_id)[:200]}-{log_type}-{stamp}.tar.gz"


def build_archive(target: Path, request: LogRequest, *, station_id: str, version: str,
                  created: datetime, diagnostics_lines: Lines, security_log_text: Text) -> None:
    """Write the archive for `request` to `target`; the log is first written next to it
    (so it is streamed, never held in memory), then packed with an info.txt."""
    work = target.parent
    member = MEMBER[request.log_type]
    log_path = work / member
    with open(log_path, "w", encoding="utf-8", errors="replace", newline="\n") as out:
        if request.log_type == DIAGNOSTICS_LOG:
            for line in diagnostics_lines(request.oldest, request.latest):
                out.write(line + "\n")
        else:
            out.write(security_log_text(request.oldest, request.latest))
    info_path = work / INFO
    info_path.write_text(info_text(request, station_id=station_id, version=version,
                                   created=created), encoding="utf-8")
    import tarfile   # here, not at the top: most stations never upload a log
    with tarfile.open(target, "w:gz") as tar:
        tar.add(info_path, arcname=INFO, filter=_anonymous)
        tar.add(log_path, arcname=member, filter=_anonymous)


def info_text(request: LogRequest, *, station_id: str, version: str,
              created: datetime) -> str:
    def bound(value: datetime | None) -> str:
        return format_datetime(value) if value is not None else "-"

    return (f"station: {station_id}\n"
            f"agent: station-agent {version}\n"
            f"log type: {request.log_type}\n"
            f"request id: {request.request_id}\n"
            f"oldest: {bound(request.oldest)}\n"
            f"latest: {bound(request.latest)}\n"
            f"created: {format_datetime(created)}\n"
            "times: UTC; the agent log's are the system clock's\n")


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # The station's user and group names mean nothing to whoever reads the archive.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info
