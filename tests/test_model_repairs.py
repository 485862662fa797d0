"""Stored device-model values the station cannot use: reset, reported, never fatal."""

from __future__ import annotations

from pathlib import Path

from ocpp.messages import MessageType, get_validator

from agent.blocks.model_repairs import report_repairs
from agent.clock import ManualClock
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import Component, EvseSpec, StationSpec, Variable
from agent.ocpp.outbox import Outbox
from agent.store import Store
from tests.harness import quiesce

STATION = StationSpec(vendor="Example", model="AC-22", serial_number="1",
                      firmware_version="1.0.0", evses=(EvseSpec(1, 32, 3, 230),),
                      security_profile=1)


def _poison(path: Path, values: dict[tuple[str, str], object]) -> None:
    store = Store(path)
    try:
        DeviceModel(store, standard_definitions(STATION))
        for (component, variable), value in values.items():
            store.execute("UPDATE device_model_value SET value = ? WHERE component = ? AND "
                          "variable = ?", (value, component, variable))
    finally:
        store.close()


def test_repairs_are_reported_once_as_one_notify_event(tmp_path: Path):
    db = tmp_path / "station-agent.db"
    _poison(db, {("SampledDataCtrlr", "TxUpdatedInterval"): "9223372036854775808",
                 ("SecurityCtrlr", "BasicAuthPassword"): "short",
                 ("OCPPCommCtrlr", "HeartbeatInterval"): b"\x00"})
    store = Store(db)
    try:
        model = DeviceModel(store, standard_definitions(STATION))
        outbox = Outbox(store, link=None, clock=ManualClock(), model=model)
        assert report_repairs(model, store, outbox, ManualClock()) == 3
        message = outbox.head()
        assert message is not None and message.action == "NotifyEvent"
        get_validator(MessageType.Call, "NotifyEvent", "2.0.1").validate(message.payload)
        events = {e["variable"]["name"]: e for e in message.payload["eventData"]}
        assert set(events) == {"TxUpdatedInterval", "BasicAuthPassword", "HeartbeatInterval"}
        tx = events["TxUpdatedInterval"]
        assert tx["component"] == {"name": "SampledDataCtrlr"}
        assert tx["actualValue"] == "60" and tx["trigger"] == "Delta"
        assert tx["techCode"] == "InvalidStoredValue" and "32-bit" in tx["techInfo"]
        # A secret is never shown, not even its replacement.
        assert events["BasicAuthPassword"]["actualValue"] == ""
        assert "short" not in str(message.payload)
        assert len({e["eventId"] for e in message.payload["eventData"]}) == 3
        # Settled: the next start finds nothing to repair and reports nothing.
        assert report_repairs(model, store, outbox, ManualClock()) == 0
    finally:
        store.close()
    store = Store(db)
    try:
        again = DeviceModel(store, standard_definitions(STATION))
        assert again.repairs == []
        assert again.get_int("SampledDataCtrlr", "TxUpdatedInterval") == 60
        assert again.get(Component("OCPPCommCtrlr"), Variable("HeartbeatInterval")).value == "3600"
    finally:
        store.close()


def test_a_kill_before_the_report_repeats_the_repair(tmp_path: Path):
    db = tmp_path / "station-agent.db"
    _poison(db, {("AlignedDataCtrlr", "Interval"): "-1"})
    store = Store(db)
    try:
        assert len(DeviceModel(store, standard_definitions(STATION)).repairs) == 1
    finally:
        store.close()   # the process dies here, before report_repairs
    store = Store(db)
    try:
        model = DeviceModel(store, standard_definitions(STATION))
        assert [str(r.definition.variable) for r in model.repairs] == ["Interval"]
        assert model.get_int("AlignedDataCtrlr", "Interval") == 900
    finally:
        store.close()


def test_a_station_whose_database_holds_crash_loop_values_starts_charges_and_reports(
        tmp_path: Path):
    """The crash loop of issue 14: 2^63 s stored for TxUpdatedInterval and the aligned
    Interval killed every start. Now the station starts, tells the CSMS which settings
    it reset, and charges with the defaults."""
    import asyncio
    from datetime import datetime, timezone

    from agent.demo.csms import Csms
    from tests.harness import PASSWORD, InProcessAgent, write_config

    station = "CS-REPAIR"

    async def main() -> None:
        clock = ManualClock(datetime.now(timezone.utc).replace(microsecond=0))
        async with Csms(passwords={station: PASSWORD}, now=clock.now) as csms:
            config = write_config(tmp_path, csms.url, station_id=station)
            async with InProcessAgent(config, clock):
                link = await csms.wait_station(station, timeout=10)
                await link.expect_call("StatusNotification", timeout=10)
            db = tmp_path / "state" / "station-agent.db"
            store = Store(db)
            for component, variable in (("SampledDataCtrlr", "TxUpdatedInterval"),
                                        ("AlignedDataCtrlr", "Interval")):
                store.execute("UPDATE device_model_value SET value = ? WHERE component = ? "
                              "AND variable = ?", ("9223372036854775808", component, variable))
            store.close()
            async with InProcessAgent(config, clock) as agent:
                link = await csms.wait_station(station, timeout=10, after=link)
                report = await link.expect_call("NotifyEvent", timeout=10)
                reset = {(e["component"]["name"], e["variable"]["name"]): e["actualValue"]
                         for e in report["eventData"] if e["techCode"] == "InvalidStoredValue"}
                assert reset == {("SampledDataCtrlr", "TxUpdatedInterval"): "60",
                                 ("AlignedDataCtrlr", "Interval"): "900"}
                answer = await link.call("RequestStartTransaction", {
                    "idToken": {"idToken": "04A2B3C4", "type": "ISO14443"},
                    "remoteStartId": 1, "evseId": 1})
                assert answer["status"] == "Accepted"
                await agent.sim("plug", 1)
                await link.expect_call("TransactionEvent",
                                       where=lambda p: p["eventType"] == "Started")
                await agent.advance(61)
                updated = await link.expect_call("TransactionEvent", where=lambda p: (
                    p["triggerReason"] == "MeterValuePeriodic"))
                assert updated["meterValue"]
            # Reported once: a third start is quiet about it.
            async with InProcessAgent(config, clock):
                again = await csms.wait_station(station, timeout=10, after=link)
                await again.expect_call("StatusNotification", timeout=10)
                assert await quiesce()
                assert not [e for p in again.calls("NotifyEvent") for e in p["eventData"]
                            if e["techCode"] == "InvalidStoredValue"]
            assert csms.schema_errors == []

    asyncio.run(asyncio.wait_for(main(), 60))
