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
