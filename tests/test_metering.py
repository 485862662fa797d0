"""Metering (block J): meter values built from readings, clock-aligned timing, the
clock-aligned MeterValues task and the transaction sampler. Time only from ManualClock."""

from __future__ import annotations

import asyncio
import json
import math
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocpp.messages import MessageType, get_validator

from agent.blocks.metering import (AlignedMeterValues, Extras, TxMeterSampler, latest_aligned,
                                   meter_value, next_aligned, next_from_start,
                                   provide_evse_power)
from agent.clock import ManualClock
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import Component, EvseSpec, StationSpec, Variable
from agent.ocpp.session import CallErrorReceived, NotConnected
from agent.ocpp import rpc
from agent.ocpp.validation import validate
from agent.store import Store
from hal.api import MeterReading

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ALL = ["Energy.Active.Import.Register", "Energy.Active.Export.Register", "Power.Active.Import",
       "Power.Active.Export", "Current.Import", "Voltage", "Frequency", "Current.Offered",
       "Power.Offered", "SoC"]


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 10))


def three_phase(ts: datetime = T0, **changes: Any) -> MeterReading:
    values: dict[str, Any] = dict(
        timestamp=ts, energy_import_wh=12345.6, energy_export_wh=0.0, power_w=11040.4,
        voltage_v=(230.10000000001, 229.9, 231.04), current_a=(16.04, 15.96, 16.0),
        frequency_hz=50.004)
    values.update(changes)
    return MeterReading(**values)


def one_phase(ts: datetime = T0) -> MeterReading:
    return MeterReading(timestamp=ts, energy_import_wh=500.0, power_w=3680.0,
                        voltage_v=(230.0, None, None), current_a=(16.0, None, None))


def check_schema(*meter_values: dict[str, Any]) -> None:
    payload = {"evseId": 1, "meterValue": list(meter_values)}
    validate("MeterValues", "request", payload)
    # The official schema (ocpp package) as a second oracle.
    get_validator(MessageType.Call, "MeterValues", "2.0.1").validate(payload)
    # And what goes on the wire is plain JSON (no NaN, no Python objects).
    json.loads(json.dumps(payload, allow_nan=False))


def station(measurands: tuple[str, ...] | None = None) -> StationSpec:
    extra = {} if measurands is None else {"measurands": measurands}
    return StationSpec(vendor="Example", model="AC-22", serial_number="1",
                       firmware_version="1.0", evses=(EvseSpec(1, 32, 3, 230),
                                                      EvseSpec(2, 16, 1, 230)),
                       security_profile=1, **extra)


@pytest.fixture
def model():
    store = Store(Path(":memory:"))
    yield DeviceModel(store, standard_definitions(station(tuple(ALL))))
    store.close()


def write(model: DeviceModel, component: str, variable: str, value: str) -> None:
    """A CSMS SetVariables write (notifies listeners, as the real one does)."""
    result = model.set(Component(component), Variable(variable), value)
    assert result.status == "Accepted", result


# --- meter_value: measurand mapping ------------------------------------------------------

def test_three_phase_reading_maps_every_measurand() -> None:
    value = meter_value(three_phase(), ALL, "Sample.Periodic", phases=3,
                        offered_current_a=16, offered_power_w=11040, soc_percent=55.4)
    assert value == {"timestamp": "2026-03-01T12:00:00.000Z", "sampledValue": [
        {"value": 12346, "context": "Sample.Periodic",
         "measurand": "Energy.Active.Import.Register"},
        {"value": 0, "context": "Sample.Periodic", "measurand": "Energy.Active.Export.Register"},
        {"value": 11040, "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "unitOfMeasure": {"unit": "W"}},
        {"value": 0, "context": "Sample.Periodic", "measurand": "Power.Active.Export",
         "unitOfMeasure": {"unit": "W"}},
        {"value": 16, "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L1", "unitOfMeasure": {"unit": "A"}},
        {"value": 16, "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L2", "unitOfMeasure": {"unit": "A"}},
        {"value": 16, "context": "Sample.Periodic", "measurand": "Current.Import",
         "phase": "L3", "unitOfMeasure": {"unit": "A"}},
        {"value": 230.1, "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L1-N", "unitOfMeasure": {"unit": "V"}},
        {"value": 229.9, "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L2-N", "unitOfMeasure": {"unit": "V"}},
        {"value": 231, "context": "Sample.Periodic", "measurand": "Voltage",
         "phase": "L3-N", "unitOfMeasure": {"unit": "V"}},
        {"value": 50, "context": "Sample.Periodic", "measurand": "Frequency",
         "unitOfMeasure": {"unit": "Hz"}},
        {"value": 16, "context": "Sample.Periodic", "measurand": "Current.Offered",
         "unitOfMeasure": {"unit": "A"}},
        {"value": 11040, "context": "Sample.Periodic", "measurand": "Power.Offered",
         "unitOfMeasure": {"unit": "W"}},
        {"value": 55, "context": "Sample.Periodic", "measurand": "SoC", "location": "EV",
         "unitOfMeasure": {"unit": "Percent"}},
    ]}
    check_schema(value)


def test_single_phase_reports_overall_current_and_voltage_without_phase() -> None:
    value = meter_value(one_phase(), ["Current.Import", "Voltage", "Power.Active.Import"],
                        "Sample.Clock", phases=1)
    assert value is not None
    assert value["sampledValue"] == [
        {"value": 16, "context": "Sample.Clock", "measurand": "Current.Import",
         "unitOfMeasure": {"unit": "A"}},
        {"value": 230, "context": "Sample.Clock", "measurand": "Voltage",
         "unitOfMeasure": {"unit": "V"}},
        {"value": 3680, "context": "Sample.Clock", "measurand": "Power.Active.Import",
         "unitOfMeasure": {"unit": "W"}},
    ]
    # A three-phase meter on a single-phase EVSE: only L1 is the EVSE's.
    value = meter_value(three_phase(), ["Current.Import"], "Sample.Clock", phases=1)
    assert value is not None and value["sampledValue"] == [
        {"value": 16, "context": "Sample.Clock", "measurand": "Current.Import",
         "unitOfMeasure": {"unit": "A"}}]
    check_schema(value)


def test_dc_evse_has_one_current_and_voltage() -> None:
    reading = MeterReading(timestamp=T0, energy_import_wh=1000, power_w=50000,
                           voltage_v=(400.0, None, None), current_a=(125.0, None, None))
    value = meter_value(reading, ["Current.Import", "Voltage"], "Trigger", phases=0)
    assert value is not None
    assert [(s["measurand"], s["value"], "phase" in s) for s in value["sampledValue"]] == [
        ("Current.Import", 125, False), ("Voltage", 400, False)]


def test_defaults_are_omitted_and_others_written() -> None:
    value = meter_value(three_phase(), ["Energy.Active.Import.Register", "Power.Active.Import"],
                        "Transaction.Begin", phases=3)
    assert value is not None
    energy, power = value["sampledValue"]
    # Wh is the default unit of an energy measurand; Outlet the default location.
    assert "unitOfMeasure" not in energy and "location" not in energy and "phase" not in energy
    # An absent unit would mean Wh: power must say W.
    assert power["unitOfMeasure"] == {"unit": "W"} and "location" not in power
    # Another location is written.
    value = meter_value(three_phase(), ["Energy.Active.Import.Register"], "Sample.Clock",
                        phases=3, location="Inlet")
    assert value is not None and value["sampledValue"][0]["location"] == "Inlet"
    check_schema(value)


def test_missing_quantities_are_skipped_silently() -> None:
    reading = MeterReading(timestamp=T0, energy_import_wh=10.0,
                           current_a=(16.0, None, 15.0), voltage_v=(None, None, None),
                           frequency_hz=math.nan, power_w=math.inf)
    value = meter_value(reading, ALL + ["Power.Factor", "Energy.Reactive.Import.Register",
                                        "No.Such.Thing"], "Sample.Periodic", phases=3)
    assert value is not None
    assert [(s["measurand"], s.get("phase")) for s in value["sampledValue"]] == [
        ("Energy.Active.Import.Register", None), ("Current.Import", "L1"),
        ("Current.Import", "L3")]
    check_schema(value)
    # Nothing at all: None, not an empty (schema-invalid) sampledValue list.
    assert meter_value(MeterReading(timestamp=T0), ALL, "Sample.Periodic", phases=3) is None
    assert meter_value(three_phase(), [], "Sample.Periodic", phases=3) is None
    assert meter_value(three_phase(), ["SoC", "Power.Offered"], "Other", phases=3) is None


def test_rounding_removes_float_noise_and_keeps_resolution() -> None:
    reading = three_phase(energy_import_wh=0.1 + 0.2 + 99999.2, power_w=-1500.4,
                          current_a=(6.05, 31.99, -0.04), frequency_hz=49.98765)
    value = meter_value(reading, ["Energy.Active.Import.Register", "Power.Active.Import",
                                  "Power.Active.Export", "Current.Import", "Frequency"],
                        "Sample.Periodic", phases=3)
    assert value is not None
    got = [(s["measurand"], s.get("phase"), s["value"]) for s in value["sampledValue"]]
    assert got == [("Energy.Active.Import.Register", None, 100000),
                   ("Power.Active.Import", None, 0),        # energy flows back: import is 0
                   ("Power.Active.Export", None, 1500),
                   ("Current.Import", "L1", 6.0), ("Current.Import", "L2", 32),
                   ("Current.Import", "L3", 0),             # -0.0 is written as 0
                   ("Frequency", None, 49.99)]
    text = json.dumps(value["sampledValue"])
    assert re.search(r"\d\.\d{3}", text) is None and '"value": -' not in text
    assert isinstance(value["sampledValue"][0]["value"], int)


def test_every_context_is_schema_valid_and_unknown_ones_are_refused() -> None:
    contexts = ["Transaction.Begin", "Sample.Periodic", "Sample.Clock", "Transaction.End",
                "Trigger", "Interruption.Begin", "Interruption.End", "Other"]
    values = [meter_value(three_phase(T0 + timedelta(seconds=i)), ALL, c, phases=3,
                          offered_current_a=10, soc_percent=80)
              for i, c in enumerate(contexts)]
    assert all(v is not None for v in values)
    check_schema(*values)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        meter_value(three_phase(), ALL, "Sample.Whenever", phases=3)
    with pytest.raises(ValueError):
        meter_value(three_phase(), ALL, "Trigger", phases=3, location="Roof")


def test_duplicates_follow_configured_order_and_timestamp_override() -> None:
    at = datetime(2026, 3, 1, 12, 15, tzinfo=UTC)
    value = meter_value(three_phase(T0 + timedelta(seconds=1)),
                        ["Power.Active.Import", "Energy.Active.Import.Register",
                         "Power.Active.Import"], "Sample.Clock", phases=3, timestamp=at)
    assert value is not None
    assert value["timestamp"] == "2026-03-01T12:15:00.000Z"
    assert [s["measurand"] for s in value["sampledValue"]] == [
        "Power.Active.Import", "Energy.Active.Import.Register"]


# --- clock-aligned timing ------------------------------------------------------------------

def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("now, interval, expected", [
    ("2026-03-01 12:07:13", 900, "2026-03-01 12:15:00"),
    ("2026-03-01 12:15:00", 900, "2026-03-01 12:30:00"),        # strictly after
    ("2026-03-01 12:14:59.999999", 900, "2026-03-01 12:15:00"),
    ("2026-03-01 23:59:59", 900, "2026-03-02 00:00:00"),        # across midnight
    ("2026-12-31 23:50:00", 3600, "2027-01-01 00:00:00"),       # across the year
    ("2028-02-28 23:59:00", 120, "2028-02-29 00:00:00"),        # leap day
    ("2026-03-01 00:00:00", 1, "2026-03-01 00:00:01"),
    ("2026-03-01 00:10:00", 7, "2026-03-01 00:10:02"),          # 602 = 86 * 7
    ("2026-03-01 23:59:50", 7, "2026-03-01 23:59:54"),          # 12342 * 7 = 86394
    ("2026-03-01 23:59:54", 7, "2026-03-02 00:00:00"),          # restarts at midnight
    ("2026-03-01 23:00:00", 5000, "2026-03-01 23:36:40"),       # 17 * 5000 = 85000
    ("2026-03-01 23:40:00", 5000, "2026-03-02 00:00:00"),       # 18 * 5000 > a day
    ("2026-03-01 12:00:00", 86400, "2026-03-02 00:00:00"),
    ("2026-03-01 12:00:00", 172800, "2026-03-02 00:00:00"),     # day 20514 is even
    ("2026-03-02 00:00:00", 172800, "2026-03-04 00:00:00"),
])
def test_next_aligned(now: str, interval: int, expected: str) -> None:
    assert next_aligned(at(now), interval) == at(expected)


def test_next_aligned_takes_any_time_zone_and_refuses_zero() -> None:
    cet = timezone(timedelta(hours=1))
    assert next_aligned(datetime(2026, 3, 1, 0, 50, tzinfo=cet), 3600) == at("2026-03-01 00:00")
    with pytest.raises(ValueError):
        next_aligned(T0, 0)


def test_latest_aligned_and_next_from_start() -> None:
    assert latest_aligned(at("2026-03-02 00:00:03"), 7) == at("2026-03-02 00:00:00")
    assert latest_aligned(at("2026-03-01 23:59:59"), 7) == at("2026-03-01 23:59:54")
    assert latest_aligned(at("2026-03-01 12:15:00"), 900) == at("2026-03-01 12:15:00")
    start = at("2026-03-01 12:00:07")
    assert next_from_start(start, 60, start) == at("2026-03-01 12:01:07")
    assert next_from_start(start, 60, at("2026-03-01 12:01:07")) == at("2026-03-01 12:02:07")
    assert next_from_start(start, 60, at("2026-03-01 11:00:00")) == at("2026-03-01 12:01:07")


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.just(UTC)),
       st.integers(min_value=1, max_value=3 * 86400))
def test_aligned_instants_are_midnight_based(now: datetime, interval: int) -> None:
    nxt = next_aligned(now, interval)
    last = latest_aligned(now, interval)
    assert last <= now < nxt
    assert next_aligned(last, interval) == nxt
    assert nxt - last <= timedelta(seconds=interval)
    if interval <= 86400:
        for instant in (nxt, last):
            midnight = instant.replace(hour=0, minute=0, second=0, microsecond=0)
            assert (instant - midnight).total_seconds() % interval == 0
    else:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        assert (nxt - epoch).total_seconds() % interval == 0


# --- AlignedMeterValues ----------------------------------------------------------------------

class FakeLink:
    """Records CALLs; `offline` makes them fail as ConnectionManager.call(wait=False) does."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.offline = False
        self.reject = False

    @property
    def connected(self) -> bool:
        return not self.offline

    async def call(self, action: str, payload: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        if self.offline:
            raise NotConnected(f"{action}: not connected to the CSMS")
        validate(action, "request", payload)
        get_validator(MessageType.Call, action, "2.0.1").validate(payload)
        self.calls.append((action, payload, kwargs))
        if self.reject:
            raise CallErrorReceived(rpc.CallError("1", "InternalError", "boom", {}))
        return {}


class Rig:
    def __init__(self, model: DeviceModel, start: datetime = at("2026-03-01 12:05:00")) -> None:
        self.model = model
        self.clock = ManualClock(start)
        self.link = FakeLink()
        self.busy: set[int] = set()
        self.tx_values: list[tuple[int, dict[str, Any]]] = []
        self.broken_meter = False
        self.aligned = AlignedMeterValues(
            self.link, model, self.clock, {1: self.read3, 2: self.read1},
            lambda evse: evse in self.busy,
            extras=lambda evse: Extras(offered_current_a=16 if evse == 1 else None))
        self.aligned.subscribe(lambda evse, value: self.tx_values.append((evse, value)))

    def read3(self) -> MeterReading:
        if self.broken_meter:
            raise OSError("meter gone")
        return three_phase(self.clock.now())

    def read1(self) -> MeterReading:
        return one_phase(self.clock.now())

    def sent(self) -> list[tuple[int, str]]:
        return [(p["evseId"], p["meterValue"][0]["timestamp"]) for a, p, _ in self.link.calls]

    async def run(self, body) -> None:
        task = asyncio.ensure_future(self.aligned.run())
        await self.clock.advance(0)
        try:
            await body()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


def test_aligned_sends_idle_evses_at_each_instant(model: DeviceModel) -> None:
    rig = Rig(model)
    write(model, "AlignedDataCtrlr", "Measurands", "Energy.Active.Import.Register,Current.Import")

    async def body() -> None:
        await rig.clock.advance(599)                        # 12:14:59
        assert rig.link.calls == []
        await rig.clock.advance(1)                          # 12:15:00
        assert rig.sent() == [(1, "2026-03-01T12:15:00.000Z"), (2, "2026-03-01T12:15:00.000Z")]
        action, payload, kwargs = rig.link.calls[0]
        assert action == "MeterValues" and kwargs == {"wait": False}
        assert all(s["context"] == "Sample.Clock"
                   for s in payload["meterValue"][0]["sampledValue"])
        assert [(s["measurand"], s.get("phase")) for s in payload["meterValue"][0]["sampledValue"]
                ] == [("Energy.Active.Import.Register", None), ("Current.Import", "L1"),
                      ("Current.Import", "L2"), ("Current.Import", "L3")]
        await rig.clock.advance(1800)                       # 12:45
        assert [ts for _, ts in rig.sent()][-2:] == ["2026-03-01T12:45:00.000Z"] * 2
        assert len(rig.link.calls) == 6
        assert rig.clock.sleepers == 1                      # one timer, no polling

    run(rig.run(body))


def test_aligned_busy_evse_goes_to_the_transaction_block(model: DeviceModel) -> None:
    rig = Rig(model)
    rig.busy.add(1)

    async def body() -> None:
        await rig.clock.advance(600)
        assert rig.sent() == [(2, "2026-03-01T12:15:00.000Z")]
        assert len(rig.tx_values) == 1
        evse, value = rig.tx_values[0]
        assert evse == 1 and value["timestamp"] == "2026-03-01T12:15:00.000Z"
        assert value["sampledValue"][0]["context"] == "Sample.Clock"
        # What the transaction block may also ask for itself, at any moment.
        direct = rig.aligned.aligned_values(1, timestamp=at("2026-03-01 12:15"))
        assert direct == value

    run(rig.run(body))


def test_send_during_idle_stops_everything_while_a_transaction_runs(model: DeviceModel) -> None:
    rig = Rig(model)
    write(model, "AlignedDataCtrlr", "SendDuringIdle", "true")

    async def body() -> None:
        await rig.clock.advance(600)                        # 12:15, nobody charging
        assert rig.sent() == [(1, "2026-03-01T12:15:00.000Z"), (2, "2026-03-01T12:15:00.000Z")]
        rig.busy.add(1)
        await rig.clock.advance(900)                        # 12:30: J01.FR.20, nothing at all
        assert len(rig.link.calls) == 2 and rig.tx_values == []
        assert rig.aligned.aligned_values(1) is None
        write(model, "AlignedDataCtrlr", "SendDuringIdle", "false")
        await rig.clock.advance(900)                        # 12:45: idle EVSE 2 again
        assert rig.sent()[-1] == (2, "2026-03-01T12:45:00.000Z")
        assert [e for e, _ in rig.tx_values] == [1]

    run(rig.run(body))


def test_interval_and_enabled_changes_apply_at_once(model: DeviceModel) -> None:
    rig = Rig(model)

    async def body() -> None:
        await rig.clock.advance(60)                         # 12:06, sleeping towards 12:15
        write(model, "AlignedDataCtrlr", "Interval", "120")
        await rig.clock.advance(0)
        await rig.clock.advance(60)                         # 12:07
        assert rig.link.calls == []
        await rig.clock.advance(60)                         # 12:08
        assert [ts for _, ts in rig.sent()] == ["2026-03-01T12:08:00.000Z"] * 2
        write(model, "AlignedDataCtrlr", "Interval", "0")
        await rig.clock.advance(3600)
        assert len(rig.link.calls) == 2 and rig.clock.sleepers == 0   # nothing armed
        write(model, "AlignedDataCtrlr", "Interval", "7")
        await rig.clock.advance(4)                          # 47280 s since midnight
        assert len(rig.link.calls) == 2
        await rig.clock.advance(1)                          # 6755 * 7 = 47285: 13:08:05
        assert rig.sent()[-1] == (2, "2026-03-01T13:08:05.000Z")
        write(model, "AlignedDataCtrlr", "Enabled", "false")
        calls = len(rig.link.calls)
        await rig.clock.advance(600)
        assert len(rig.link.calls) == calls

    run(rig.run(body))


def test_aligned_values_are_lost_offline_and_faults_do_not_stop_the_task(
        model: DeviceModel) -> None:
    rig = Rig(model)

    async def body() -> None:
        rig.link.offline = True
        await rig.clock.advance(600)                        # 12:15 offline: dropped
        rig.link.offline = False
        rig.broken_meter = True
        await rig.clock.advance(900)                        # 12:30: EVSE 1's meter fails
        assert rig.sent() == [(2, "2026-03-01T12:30:00.000Z")]
        rig.broken_meter = False
        rig.link.reject = True
        await rig.clock.advance(900)                        # 12:45: CALLERRORs are logged
        rig.link.reject = False
        await rig.clock.advance(900)                        # 13:00
        assert rig.sent()[-2:] == [(1, "2026-03-01T13:00:00.000Z"),
                                   (2, "2026-03-01T13:00:00.000Z")]
        # Nothing was queued while offline: 12:15 never arrives.
        assert "2026-03-01T12:15:00.000Z" not in [ts for _, ts in rig.sent()]

    run(rig.run(body))


def test_aligned_across_midnight_with_an_odd_interval(model: DeviceModel) -> None:
    rig = Rig(model, start=at("2026-03-01 23:59:50"))
    write(model, "AlignedDataCtrlr", "Interval", "7")

    async def body() -> None:
        await rig.clock.advance(20)
        stamps = sorted({ts for _, ts in rig.sent()})
        assert stamps == ["2026-03-01T23:59:54.000Z", "2026-03-02T00:00:00.000Z",
                          "2026-03-02T00:00:07.000Z"]

    run(rig.run(body))


def test_wall_clock_jump_skips_instead_of_stamping_falsely(model: DeviceModel) -> None:
    rig = Rig(model)

    async def body() -> None:
        await rig.clock.advance(300)                        # 12:10, asleep till 12:15
        rig.clock.set_time(at("2026-03-01 14:00:30"))       # CSMS corrects the clock
        await rig.clock.advance(300)                        # wakes (capped sleep), late
        assert rig.link.calls == []                         # 12:15 not sent at 14:05
        await rig.clock.advance(900)                        # 14:20:30 -> 14:15 was next
        assert rig.sent() == [(1, "2026-03-01T14:15:00.000Z"), (2, "2026-03-01T14:15:00.000Z")]

    run(rig.run(body))


def test_triggered_meter_values(model: DeviceModel) -> None:
    rig = Rig(model)
    write(model, "AlignedDataCtrlr", "Interval", "0")       # a trigger works regardless
    payloads = rig.aligned.triggered()
    assert [p["evseId"] for p in payloads] == [1, 2]
    for payload in payloads:
        validate("MeterValues", "request", payload)
        assert payload["meterValue"][0]["timestamp"] == "2026-03-01T12:05:00.000Z"
        assert {s["context"] for s in payload["meterValue"][0]["sampledValue"]} == {"Trigger"}
    assert [p["evseId"] for p in rig.aligned.triggered(2)] == [2]
    assert rig.aligned.triggered(9) == []


def test_evse_power_is_provided_from_the_meter(model: DeviceModel) -> None:
    provide_evse_power(model, {1: lambda: three_phase(), 2: lambda: None})
    assert model.get(Component("EVSE", evse=1), Variable("Power")).value == "11040"
    assert model.get(Component("EVSE", evse=2), Variable("Power")).value == "0"


# --- TxMeterSampler ----------------------------------------------------------------------------

def reading_at(start: datetime, seconds: float, energy: float | None = None) -> MeterReading:
    return three_phase(start + timedelta(seconds=seconds),
                       energy_import_wh=10000 + seconds if energy is None else energy)


def test_sampler_begin_and_periodic_updates(model: DeviceModel) -> None:
    start = at("2026-03-01 12:03:20")
    write(model, "SampledDataCtrlr", "TxStartedMeasurands",
          "Energy.Active.Import.Register,Current.Offered")
    sampler = TxMeterSampler(model, started_at=start, phases=3)
    begin = sampler.begin(reading_at(start, 0), Extras(offered_current_a=16))
    assert begin == {"timestamp": "2026-03-01T12:03:20.000Z", "sampledValue": [
        {"value": 10000, "context": "Transaction.Begin",
         "measurand": "Energy.Active.Import.Register"},
        {"value": 16, "context": "Transaction.Begin", "measurand": "Current.Offered",
         "unitOfMeasure": {"unit": "A"}}]}
    # TxUpdatedInterval 60 from the start; AlignedDataCtrlr.TxEndedInterval 900 aligned.
    assert sampler.next_due() == start + timedelta(seconds=60)
    assert sampler.sample(reading_at(start, 59), start + timedelta(seconds=59)) is None
    value = sampler.sample(reading_at(start, 60), start + timedelta(seconds=60))
    assert value is not None
    assert [(s["measurand"], s["context"]) for s in value["sampledValue"]] == [
        ("Energy.Active.Import.Register", "Sample.Periodic"),
        ("Power.Active.Import", "Sample.Periodic")]
    check_schema(begin, value)
    assert sampler.next_due() == start + timedelta(seconds=120)
    # Called late: one value, then back on the grid counted from the start.
    assert sampler.sample(reading_at(start, 250), start + timedelta(seconds=250)) is not None
    assert sampler.next_due() == start + timedelta(seconds=300)
    # A meter that does not answer: no value, the schedule moves on.
    assert sampler.sample(None, start + timedelta(seconds=300)) is None
    assert sampler.next_due() == start + timedelta(seconds=360)
    # A CSMS change applies from the next sample on.
    write(model, "SampledDataCtrlr", "TxUpdatedInterval", "0")
    assert sampler.next_due() == at("2026-03-01 12:15:00")   # only the aligned Ended one left
    assert sampler.sample(reading_at(start, 400), start + timedelta(seconds=400)) is None
    trig = sampler.value(reading_at(start, 401), "Trigger")
    assert trig is not None and {s["context"] for s in trig["sampledValue"]} == {"Trigger"}


def test_sampler_ended_list_with_defaults_is_begin_aligned_and_end(model: DeviceModel) -> None:
    start = at("2026-03-01 12:03:20")
    sampler = TxMeterSampler(model, started_at=start, phases=3)
    sampler.begin(reading_at(start, 0))
    now = start
    while (due := sampler.next_due()) is not None and due <= start + timedelta(minutes=40):
        now = due
        sampler.sample(reading_at(start, (now - start).total_seconds()), now)
    end = start + timedelta(minutes=40)
    ended = sampler.end(reading_at(start, 2400), end)
    assert [(v["timestamp"], [s["context"] for s in v["sampledValue"]]) for v in ended] == [
        ("2026-03-01T12:03:20.000Z", ["Transaction.Begin"]),
        ("2026-03-01T12:15:00.000Z", ["Sample.Clock"]),
        ("2026-03-01T12:30:00.000Z", ["Sample.Clock"]),
        ("2026-03-01T12:43:20.000Z", ["Transaction.End"]),
    ]
    assert ended[-1]["sampledValue"][0]["value"] == 12400
    check_schema(*ended)
    # Nothing else was sent with the Ended message: Power is not an Ended measurand.
    assert {s["measurand"] for v in ended for s in v["sampledValue"]} == {
        "Energy.Active.Import.Register"}


def test_sampler_ended_periodic_is_thinned_evenly(model: DeviceModel) -> None:
    start = at("2026-03-01 00:00:00")
    write(model, "SampledDataCtrlr", "TxEndedInterval", "60")
    write(model, "SampledDataCtrlr", "TxUpdatedInterval", "0")
    write(model, "AlignedDataCtrlr", "TxEndedInterval", "0")
    sampler = TxMeterSampler(model, started_at=start, phases=3, max_ended_samples=10)
    sampler.begin(reading_at(start, 0))
    for minute in range(1, 24 * 60):                         # a whole day, every minute
        now = start + timedelta(minutes=minute)
        assert sampler.next_due() == now
        sampler.sample(reading_at(start, minute * 60), now)
    ended = sampler.end(reading_at(start, 86399), start + timedelta(seconds=86399))
    middle = ended[1:-1]
    assert len(middle) <= 10 and len(middle) >= 5
    stamps = [datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")) for v in middle]
    gaps = {b - a for a, b in zip(stamps, stamps[1:])}
    assert len(gaps) == 1                                    # evenly spaced
    assert gaps.pop() == timedelta(minutes=256)              # stride 256 after 8 halvings
    assert ended[0]["sampledValue"][0]["context"] == "Transaction.Begin"
    assert ended[-1]["sampledValue"][0]["context"] == "Transaction.End"
    check_schema(*ended)


def test_sampler_merges_equal_timestamps_and_honours_enabled(model: DeviceModel) -> None:
    start = at("2026-03-01 12:00:00")
    write(model, "SampledDataCtrlr", "TxEndedInterval", "900")
    write(model, "SampledDataCtrlr", "TxEndedMeasurands",
          "Energy.Active.Import.Register,Power.Active.Import")
    sampler = TxMeterSampler(model, started_at=start, phases=3)
    sampler.begin(reading_at(start, 0))
    now = start + timedelta(seconds=900)
    # Periodic (from the start) and aligned instants coincide at 12:15:00.
    sampler.sample(three_phase(now), now)
    ended = sampler.ended_values()
    assert [v["timestamp"] for v in ended] == ["2026-03-01T12:00:00.000Z",
                                               "2026-03-01T12:15:00.000Z"]
    assert [s["context"] for s in ended[1]["sampledValue"]] == [
        "Sample.Periodic", "Sample.Periodic", "Sample.Clock"]
    check_schema(*ended)

    write(model, "SampledDataCtrlr", "Enabled", "false")
    write(model, "AlignedDataCtrlr", "Enabled", "false")
    off = TxMeterSampler(model, started_at=start, phases=3)
    assert off.begin(reading_at(start, 0)) is None
    assert off.next_due() is None
    assert off.end(reading_at(start, 60)) == []


def test_sampler_snapshot_survives_a_restart(model: DeviceModel) -> None:
    start = at("2026-03-01 12:03:20")
    write(model, "SampledDataCtrlr", "TxEndedInterval", "300")
    sampler = TxMeterSampler(model, started_at=start, phases=1, location="Inlet",
                             max_ended_samples=3)
    sampler.begin(reading_at(start, 0))
    for seconds in (300, 600, 696, 900, 1200, 1500):
        sampler.sample(reading_at(start, seconds), start + timedelta(seconds=seconds))
    data = json.loads(json.dumps(sampler.snapshot()))        # as stored in SQLite
    again = TxMeterSampler.restore(model, data)
    assert again.next_due() == sampler.next_due()
    end = start + timedelta(seconds=1600)
    assert again.end(reading_at(start, 1600), end) == sampler.end(reading_at(start, 1600), end)
    assert all(s.get("location") == "Inlet"
               for v in again.ended_values() for s in v["sampledValue"])


def test_sampler_skips_aligned_instants_served_too_late(model: DeviceModel) -> None:
    start = at("2026-03-01 12:00:00")
    sampler = TxMeterSampler(model, started_at=start, phases=3)
    sampler.begin(reading_at(start, 0))
    late = at("2026-03-01 12:17:00")                         # 12:15 is 120 s ago
    sampler.sample(three_phase(late), late)
    assert [v["timestamp"] for v in sampler.ended_values()] == ["2026-03-01T12:00:00.000Z"]
    assert sampler.next_due() == at("2026-03-01 12:18:00")   # the next Updated


def test_sampler_stamps_values_with_their_instants(model: DeviceModel) -> None:
    """A meter polled on its own rhythm: Sample.Periodic values carry the scheduled
    instant (intervals exactly TxUpdatedInterval, TC_J_09), Transaction.Begin the start
    (J02.FR.10); a reading from before the interval, or a sample served late, keeps its
    own time."""
    start = at("2026-03-01 12:03:20.250")
    write(model, "SampledDataCtrlr", "TxUpdatedInterval", "30")
    write(model, "AlignedDataCtrlr", "TxEndedInterval", "0")
    sampler = TxMeterSampler(model, started_at=start, phases=3)
    begin = sampler.begin(reading_at(start, -600))           # idle meter, read long ago
    assert begin is not None and begin["timestamp"] == "2026-03-01T12:03:20.250Z"
    first = sampler.sample(reading_at(start, 29.4), start + timedelta(seconds=30.1))
    second = sampler.sample(reading_at(start, 60.3), start + timedelta(seconds=60.3))
    assert first is not None and second is not None
    assert [first["timestamp"], second["timestamp"]] == ["2026-03-01T12:03:50.250Z",
                                                         "2026-03-01T12:04:20.250Z"]
    stale = sampler.sample(reading_at(start, 50), start + timedelta(seconds=90))
    assert stale is not None and stale["timestamp"] == "2026-03-01T12:04:10.250Z"
    write(model, "SampledDataCtrlr", "TxUpdatedInterval", "120")
    slow = TxMeterSampler(model, started_at=start, phases=3)
    late = slow.sample(reading_at(start, 200), start + timedelta(seconds=200))  # 80 s late
    assert late is not None and late["timestamp"] == "2026-03-01T12:06:40.250Z"
