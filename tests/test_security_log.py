"""The security event log (A04, GetLog SecurityLog): durable, bounded, critical events sent."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from ocpp.messages import MessageType, get_validator

from agent.blocks.security_log import (MAX_TECH_INFO, MAX_TYPE, SECURITY_EVENTS,
                                       SecurityLog)
from agent.clock import ManualClock, parse_datetime
from agent.ocpp.outbox import Outbox
from agent.ocpp.validation import validate
from agent.store import Store
from tests.harness import close_stores

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


class Env:
    """A store, clock, outbox and security log; `reopen()` is a restart on the same file."""

    def __init__(self, path: Path, capacity: int = 10_000) -> None:
        self.path = path
        self.capacity = capacity
        self.clock = ManualClock(T0)
        self.stores: list[Store] = []
        self._open()

    def _open(self) -> None:
        self.store = Store(self.path)
        self.stores.append(self.store)
        # The outbox only queues here: no link is needed until it delivers.
        self.outbox = Outbox(self.store, None, self.clock, None)
        self.log = SecurityLog(self.store, self.clock, self.outbox, capacity=self.capacity)

    def reopen(self) -> None:
        self.store.close()
        self._open()

    def tick(self, seconds: float = 1.0) -> None:
        self.clock.set_time(self.clock.now() + timedelta(seconds=seconds))

    def notifications(self) -> list[dict]:
        rows = self.store.query("SELECT action, payload FROM outbox ORDER BY id")
        assert all(action == "SecurityEventNotification" for action, _ in rows)
        return [json.loads(payload) for _, payload in rows]

    def close(self) -> None:
        close_stores(self.stores)


@pytest.fixture
def env(tmp_path: Path):
    e = Env(tmp_path / "station-agent.db")
    yield e
    e.close()


def check_schema(payload: dict) -> None:
    validate("SecurityEventNotification", "request", payload)
    # The official schema (ocpp package) as a second oracle; it does not check date-time
    # formats, so parse the timestamp too.
    get_validator(MessageType.Call, "SecurityEventNotification", "2.0.1").validate(payload)
    parse_datetime(payload["timestamp"])


# -- the event list -------------------------------------------------------------------------

NAMED_IN_ISSUE = {
    # Appendix 1 (v1.3), with the errata of 2023-12 (2.18.1) for the two firmware ones.
    "StartupOfTheDevice": True, "ResetOrReboot": True, "SettingSystemTime": True,
    "FailedToAuthenticateAtCsms": False, "CsmsFailedToAuthenticate": False,
    "InvalidCsmsCertificate": True, "InvalidChargingStationCertificate": True,
    "InvalidTLSVersion": True, "InvalidTLSCipherSuite": True,
    "ReconfigurationOfSecurityParameters": False, "SecurityLogWasCleared": True,
    "InvalidFirmwareSigningCertificate": True, "InvalidFirmwareSignature": True,
    "InvalidMessages": False, "AttemptedReplayAttacks": False, "MemoryExhaustion": True,
    "TamperDetectionActivated": True, "FirmwareUpdated": True,
}


def test_event_list_is_the_appendix_with_its_criticality():
    for name, critical in NAMED_IN_ISSUE.items():
        assert SECURITY_EVENTS[name] is critical, name
    # The appendix lists two more: the local maintenance interface logins, both critical.
    assert SECURITY_EVENTS["MaintenanceLoginAccepted"] is True
    assert SECURITY_EVENTS["MaintenanceLoginFailed"] is True
    assert len(SECURITY_EVENTS) == 20
    assert all(len(name) <= MAX_TYPE for name in SECURITY_EVENTS)


# -- recording and sending ------------------------------------------------------------------

def test_critical_events_are_logged_and_queued_with_a_valid_payload(env):
    env.log.record("StartupOfTheDevice", "boot reason PowerUp")
    env.tick()
    env.log.record("InvalidCsmsCertificate")
    sent = env.notifications()
    assert sent == [
        {"type": "StartupOfTheDevice", "timestamp": "2026-03-01T12:00:00.000Z",
         "techInfo": "boot reason PowerUp"},
        {"type": "InvalidCsmsCertificate", "timestamp": "2026-03-01T12:00:01.000Z"},
    ]
    for payload in sent:
        check_schema(payload)
    events = env.log.entries()
    assert [(e.type, e.critical) for e in events] == [("StartupOfTheDevice", True),
                                                     ("InvalidCsmsCertificate", True)]
    assert events[0].timestamp == T0 and events[0].tech_info == "boot reason PowerUp"


def test_non_critical_events_are_only_logged(env):
    env.log.record("FailedToAuthenticateAtCsms", "HTTP 401")
    env.log.record("InvalidMessages")
    assert env.outbox.pending() == 0
    assert [e.type for e in env.log.entries()] == ["FailedToAuthenticateAtCsms",
                                                   "InvalidMessages"]
    assert not any(e.critical for e in env.log.entries())


def test_vendor_events_are_logged_and_sent_only_when_the_caller_says_critical(env):
    env.log.record("ExampleDoorOpened")
    assert env.outbox.pending() == 0
    env.log.record("ExampleCabinetBreach", "sensor 2", critical=True)
    [payload] = env.notifications()
    assert payload["type"] == "ExampleCabinetBreach"
    check_schema(payload)
    assert [e.critical for e in env.log.entries()] == [False, True]


def test_a_repeat_the_caller_marks_not_critical_is_logged_but_not_sent(env):
    # Errata to A00.FR.316: InvalidTLSVersion needs sending once per run of failed attempts.
    env.log.record("InvalidTLSVersion", "TLSv1.1 offered")
    env.log.record("InvalidTLSVersion", "TLSv1.1 offered", critical=False)
    assert env.outbox.pending() == 1
    assert len(env.log.entries()) == 2


def test_long_tech_info_and_type_are_cut_to_the_schema_limits(env):
    env.log.record("MemoryExhaustion", "x" * 1000)
    env.log.record("Vendor" + "E" * 100, "é" * 300, critical=True)
    sent = env.notifications()
    for payload in sent:
        check_schema(payload)
    assert sent[0]["techInfo"] == "x" * MAX_TECH_INFO
    assert sent[1]["type"] == ("Vendor" + "E" * 100)[:MAX_TYPE]
    assert sent[1]["techInfo"] == "é" * MAX_TECH_INFO
    first, second = env.log.entries()
    assert len(first.tech_info) == 255 and len(second.type) == 50


def test_timestamps_are_the_clock_in_milliseconds(env):
    env.clock.set_time(T0 + timedelta(microseconds=123_456))
    env.log.record("ResetOrReboot")
    [event] = env.log.entries()
    assert event.timestamp == T0 + timedelta(milliseconds=123)
    assert env.notifications()[0]["timestamp"] == "2026-03-01T12:00:00.123Z"


# -- durability and atomicity ---------------------------------------------------------------

def test_the_log_and_its_queue_survive_a_restart(env):
    env.log.record("StartupOfTheDevice")
    env.log.record("CsmsFailedToAuthenticate", "bad password from CSMS")
    env.reopen()
    assert [(e.type, e.tech_info) for e in env.log.entries()] == [
        ("StartupOfTheDevice", None), ("CsmsFailedToAuthenticate", "bad password from CSMS")]
    assert env.outbox.pending() == 1
    env.log.record("ResetOrReboot")
    assert [e.id for e in env.log.entries()] == [1, 2, 3]


def test_record_is_committed_before_it_returns(env):
    env.log.record("TamperDetectionActivated")
    # Another connection (as after a kill -9) sees both the row and the notification.
    other = sqlite3.connect(env.path)
    try:
        assert other.execute("SELECT type FROM security_log").fetchall() == [
            ("TamperDetectionActivated",)]
        assert other.execute("SELECT action FROM outbox").fetchall() == [
            ("SecurityEventNotification",)]
    finally:
        other.close()


def test_log_row_and_notification_are_one_transaction(env, monkeypatch):
    enqueue = env.outbox.enqueue
    seen_mid_way = []

    def enqueue_then_die(action, payload, **kwargs):
        enqueue(action, payload, **kwargs)
        # Both rows are written but nothing is committed: another reader sees neither.
        other = sqlite3.connect(env.path)
        try:
            seen_mid_way.append(other.execute("SELECT COUNT(*) FROM security_log").fetchone()[0])
            seen_mid_way.append(other.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        finally:
            other.close()
        raise RuntimeError("power cut")

    monkeypatch.setattr(env.outbox, "enqueue", enqueue_then_die)
    with pytest.raises(RuntimeError):
        env.log.record("SettingSystemTime", "clock moved by 3600 s")
    assert seen_mid_way == [0, 0]
    assert env.log.entries() == [] and env.outbox.pending() == 0
    # The store is usable afterwards and the next event goes through whole.
    monkeypatch.setattr(env.outbox, "enqueue", enqueue)
    env.log.record("SettingSystemTime", "clock moved by 3600 s")
    assert len(env.log.entries()) == 1 and env.outbox.pending() == 1


# -- bounds ---------------------------------------------------------------------------------

def test_rotation_at_capacity_keeps_the_newest(tmp_path):
    env = Env(tmp_path / "db", capacity=5)
    try:
        for n in range(12):
            env.log.record("InvalidMessages", f"message {n}")
            env.tick()
        assert [e.tech_info for e in env.log.entries()] == [f"message {n}" for n in range(7, 12)]
        assert len(env.log) == 5
        # A critical event's notification is not lost when its row rotates out of the log.
        env.log.record("StartupOfTheDevice")
        for n in range(5):
            env.log.record("InvalidMessages", f"later {n}")
        assert all(e.type == "InvalidMessages" for e in env.log.entries())
        assert env.outbox.pending() == 1
    finally:
        env.close()


def test_capacity_must_be_positive(env):
    with pytest.raises(ValueError, match="capacity"):
        SecurityLog(env.store, env.clock, env.outbox, capacity=0)


# -- reading, export, clear -----------------------------------------------------------------

def test_entries_filter_by_time_with_inclusive_bounds(env):
    for n in range(5):
        env.log.record("InvalidMessages", f"m{n}")
        env.tick(60)
    within = env.log.entries(T0 + timedelta(minutes=1), T0 + timedelta(minutes=3))
    assert [e.tech_info for e in within] == ["m1", "m2", "m3"]
    assert [e.tech_info for e in env.log.entries(oldest=T0 + timedelta(minutes=4))] == ["m4"]
    assert [e.tech_info for e in env.log.entries(latest=T0)] == ["m0"]
    assert env.log.entries(T0 + timedelta(minutes=10)) == []
    # A bound in another time zone means the same instant.
    cet = timezone(timedelta(hours=1))
    assert [e.tech_info for e in env.log.entries(T0.astimezone(cet), T0.astimezone(cet))] == ["m0"]


def test_order_is_recording_order_even_if_the_clock_goes_back(env):
    env.log.record("InvalidMessages", "first")
    env.clock.set_time(T0 - timedelta(hours=1))  # the CSMS corrects the clock
    env.log.record("InvalidMessages", "second")
    assert [e.tech_info for e in env.log.entries()] == ["first", "second"]


def test_export_text_is_one_line_per_event(env):
    env.log.record("StartupOfTheDevice")
    env.tick(1.5)
    env.log.record("InvalidMessages", "frame 1\nframe 2")
    env.tick(60)
    env.log.record("ResetOrReboot", "by CSMS")
    text = env.log.export_text()
    assert text == ("2026-03-01T12:00:00.000Z StartupOfTheDevice\n"
                    "2026-03-01T12:00:01.500Z InvalidMessages frame 1\\nframe 2\n"
                    "2026-03-01T12:01:01.500Z ResetOrReboot by CSMS\n")
    assert env.log.export_text(latest=T0 + timedelta(seconds=2)).count("\n") == 2
    assert env.log.export_text(oldest=T0 + timedelta(days=1)) == ""


def test_clear_leaves_exactly_one_security_log_was_cleared(env):
    for name in ("StartupOfTheDevice", "InvalidMessages", "MemoryExhaustion"):
        env.log.record(name)
    env.tick()
    env.log.clear()
    [event] = env.log.entries()
    assert event.type == "SecurityLogWasCleared" and event.critical
    assert event.timestamp == T0 + timedelta(seconds=1)
    # Critical: the CSMS hears of it (after the two notifications already queued).
    sent = env.notifications()
    assert [p["type"] for p in sent] == ["StartupOfTheDevice", "MemoryExhaustion",
                                        "SecurityLogWasCleared"]
    check_schema(sent[-1])
    env.reopen()
    assert [e.type for e in env.log.entries()] == ["SecurityLogWasCleared"]


# -- the journal ----------------------------------------------------------------------------

def test_every_event_goes_to_the_journal_critical_as_warning(env, caplog):
    caplog.set_level(logging.INFO, logger="agent.blocks.security_log")
    env.log.record("InvalidMessages", "unknown action Foo")
    env.log.record("InvalidTLSCipherSuite")
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records == [(logging.INFO, "security event InvalidMessages: unknown action Foo"),
                       (logging.WARNING, "security event InvalidTLSCipherSuite")]
