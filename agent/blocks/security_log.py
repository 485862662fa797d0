"""The security event log (block A, use case A04, and the SecurityLog of GetLog, N01).

Why here and why so strict: a security event must not vanish with the power, and a critical
one must reach the CSMS even if it happened while the link was down (A04; the errata of
2023-12 to A00.FR.316 say so for InvalidTLSVersion). So `record()` is synchronous and commits
before it returns; for a critical event the log row and the SecurityEventNotification in the
outbox are one store transaction, so after a power cut or `kill -9` both exist or neither.

The log is bounded: above `capacity` rows the oldest go first, so a flood (failed logins,
invalid messages) cannot fill the flash. The order of the log is the order of recording
(row id), not of timestamps: the CSMS may set the clock back, and what happened after that
correction still happened later.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from agent.clock import Clock, format_datetime
from agent.ocpp.outbox import Outbox
from agent.store import Store

log = logging.getLogger(__name__)

# SecurityEventNotificationRequest: type is string[50], techInfo string[255].
MAX_TYPE = 50
MAX_TECH_INFO = 255
DEFAULT_CAPACITY = 10_000
CLEARED = "SecurityLogWasCleared"

# OCPP 2.0.1 Part 2, Appendix 1 "Security Events" (v1.3): every listed event and whether it
# is critical (pushed to the CSMS). The errata of 2023-12, section 2.18.1 [682], make
# InvalidFirmwareSignature and InvalidFirmwareSigningCertificate critical (L01.FR.02/03
# require them to be sent); the appendix itself still says "No" for both.
SECURITY_EVENTS: dict[str, bool] = {
    "FirmwareUpdated": True,
    "FailedToAuthenticateAtCsms": False,
    "CsmsFailedToAuthenticate": False,
    "SettingSystemTime": True,
    "StartupOfTheDevice": True,
    "ResetOrReboot": True,
    "SecurityLogWasCleared": True,
    "ReconfigurationOfSecurityParameters": False,
    "MemoryExhaustion": True,
    "InvalidMessages": False,
    "AttemptedReplayAttacks": False,
    "TamperDetectionActivated": True,
    "InvalidFirmwareSignature": True,            # errata 2.18.1; appendix: No
    "InvalidFirmwareSigningCertificate": True,   # errata 2.18.1; appendix: No
    "InvalidCsmsCertificate": True,
    "InvalidChargingStationCertificate": True,
    "InvalidTLSVersion": True,
    "InvalidTLSCipherSuite": True,
    "MaintenanceLoginAccepted": True,
    "MaintenanceLoginFailed": True,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS security_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,  -- order of recording; never reused
    timestamp INTEGER NOT NULL,                   -- UTC microseconds since the epoch (ms steps)
    type      TEXT    NOT NULL,                   -- at most MAX_TYPE characters
    tech_info TEXT,                               -- at most MAX_TECH_INFO characters
    critical  INTEGER NOT NULL                    -- 1: a SecurityEventNotification was queued
);
CREATE INDEX IF NOT EXISTS security_log_timestamp ON security_log (timestamp);
"""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class SecurityEvent:
    id: int
    timestamp: datetime
    type: str
    tech_info: str | None
    critical: bool


def is_critical(event_type: str) -> bool:
    """Whether the spec says this event is pushed to the CSMS (unknown types: no)."""
    return SECURITY_EVENTS.get(event_type, False)


def _micros(value: datetime) -> int:
    # A naive datetime is taken as UTC: the agent knows no other time zone.
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(microseconds=1)


def _escape(text: str) -> str:
    # One event per line in the export, whatever the caller put into techInfo.
    return (text.replace("\\", "\\\\").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\t", "\\t"))


class SecurityLog:
    def __init__(self, store: Store, clock: Clock, outbox: Outbox, *,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"security log capacity must be at least 1, not {capacity}")
        self._store = store
        self._clock = clock
        self._outbox = outbox
        self.capacity = capacity
        store.ensure_schema(_SCHEMA)

    def record(self, event_type: str, tech_info: str | None = None, *,
               critical: bool | None = None) -> None:
        """Store one security event durably; queue a SecurityEventNotification if critical.

        `critical` None takes the spec's word (SECURITY_EVENTS; vendor events are not sent);
        True sends a vendor event too; False only logs, for a repeat the spec lets us not
        send again (errata to A00.FR.316: InvalidTLSVersion once per run of failed attempts).
        `tech_info` must hold nothing secret: it goes to the log, the CSMS and the journal.
        """
        try:
            with self._store.transaction() as db:
                event = self._insert(db, event_type, tech_info, critical)
        except Exception as exc:
            log.error("security event %s could not be stored: %s", event_type[:MAX_TYPE], exc)
            raise
        _announce(event)

    def _insert(self, db: Any, event_type: str, tech_info: str | None,
                critical: bool | None) -> SecurityEvent:
        event_type = event_type[:MAX_TYPE]
        if tech_info is not None:
            tech_info = tech_info[:MAX_TECH_INFO]
        send = is_critical(event_type) if critical is None else critical
        now = self._clock.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # what is sent: ms
        cursor = db.execute("INSERT INTO security_log (timestamp, type, tech_info, critical) "
                            "VALUES (?, ?, ?, ?)", (_micros(now), event_type, tech_info, int(send)))
        # Keep the newest `capacity` rows: drop everything up to the row `capacity` places
        # from the newest (no such row while there are fewer: nothing goes).
        db.execute("DELETE FROM security_log WHERE id <= (SELECT id FROM security_log "
                   "ORDER BY id DESC LIMIT 1 OFFSET ?)", (self.capacity,))
        if send:
            payload = {"type": event_type, "timestamp": format_datetime(now)}
            if tech_info is not None:
                payload["techInfo"] = tech_info
            # Joins this transaction: the notification and the row commit together.
            self._outbox.enqueue("SecurityEventNotification", payload)
        return SecurityEvent(int(cursor.lastrowid or 0), now, event_type, tech_info, send)

    def entries(self, oldest: datetime | None = None,
                latest: datetime | None = None) -> list[SecurityEvent]:
        """Events with oldest <= timestamp <= latest (bounds optional), in recorded order."""
        where, params = [], []
        if oldest is not None:
            where.append("timestamp >= ?")
            params.append(_micros(oldest))
        if latest is not None:
            where.append("timestamp <= ?")
            params.append(_micros(latest))
        sql = "SELECT id, timestamp, type, tech_info, critical FROM security_log"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._store.query(sql + " ORDER BY id", params)
        return [SecurityEvent(id_, _EPOCH + timedelta(microseconds=ts), type_, info, bool(crit))
                for id_, ts, type_, info, crit in rows]

    def export_text(self, oldest: datetime | None = None,
                    latest: datetime | None = None) -> str:
        """The SecurityLog file GetLog uploads: `timestamp type [techInfo]`, one line each."""
        lines = []
        for event in self.entries(oldest, latest):
            line = f"{format_datetime(event.timestamp)} {_escape(event.type)}"
            if event.tech_info:
                line += " " + _escape(event.tech_info)
            lines.append(line + "\n")
        return "".join(lines)

    def __len__(self) -> int:
        return int(self._store.query("SELECT COUNT(*) FROM security_log")[0][0])

    def clear(self) -> None:
        """Empty the log, leaving only the SecurityLogWasCleared event (in one transaction,
        so the log is never found empty without the event that explains it)."""
        with self._store.transaction() as db:
            db.execute("DELETE FROM security_log")
            event = self._insert(db, CLEARED, None, None)
        log.info("security log cleared")
        _announce(event)


def _announce(event: SecurityEvent) -> None:
    # After the commit: the journal never shows an event the log does not hold.
    log.log(logging.WARNING if event.critical else logging.INFO, "security event %s%s%s",
            event.type, ": " if event.tech_info else "", event.tech_info or "")
