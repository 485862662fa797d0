"""A transaction's energy registers never go backwards (docs/energy-register.md): the
rule (agent/blocks/metering/register.py), the transaction sampler that applies it, and
the hardware start that lets a polled meter give its register before a power-cut
transaction is ended. Time from ManualClock or none; real I/O only where a meter's
first answer is waited for."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.blocks.metering import TxMeterSampler
from agent.blocks.metering.register import (BELOW_REPORTED, NOT_READ, HeldRegister,
                                            RegisterFloor)
from agent.hardware import Hardware
from agent.model.definitions import standard_definitions
from agent.model.device_model import DeviceModel
from agent.model.types import Component, EvseSpec, StationSpec, Variable
from agent.ocpp.validation import validate
from agent.store import Store
from hal.api import EnergyMeter, EvseDevices, MeterReading
from hal.evse import EvseHardware

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ENERGY = "Energy.Active.Import.Register"


def reading(wh: float | None, seconds: float = 0, power_w: float = 11040) -> MeterReading:
    return MeterReading(timestamp=T0 + timedelta(seconds=seconds), energy_import_wh=wh,
                        energy_export_wh=0.0, power_w=power_w,
                        voltage_v=(230.0, 230.0, 230.0), current_a=(16.0, 16.0, 16.0))


def element(*entries: tuple[str, float], context: str = "Sample.Periodic") -> dict[str, Any]:
    return {"timestamp": "2026-03-01T12:00:00.000Z", "sampledValue": [
        {"value": v, "context": context, "measurand": m} for m, v in entries]}


def values_of(value: dict[str, Any] | None, measurand: str = ENERGY) -> list[float]:
    return [s["value"] for s in (value or {}).get("sampledValue", [])
            if s.get("measurand", ENERGY) == measurand]


@pytest.fixture
def model():
    store = Store(Path(":memory:"))
    spec = StationSpec(vendor="Example", model="AC-22", serial_number="1",
                       firmware_version="1.0", evses=(EvseSpec(1, 32, 3, 230),),
                       security_profile=1)
    yield DeviceModel(store, standard_definitions(spec))
    store.close()


def write(model: DeviceModel, component: str, variable: str, value: str) -> None:
    assert model.set(Component(component), Variable(variable), value).status == "Accepted"


# -- the rule ------------------------------------------------------------------------------

def test_a_register_below_the_floor_carries_the_floor_and_is_reported() -> None:
    floor = RegisterFloor()
    first, held = floor.hold(element((ENERGY, 1200), ("Power.Active.Import", 11040)))
    assert held == [] and values_of(first) == [1200]
    # The meter now shows less (replaced, reset, a bad read): 1200 goes instead.
    low = element((ENERGY, 3), ("Power.Active.Import", 7000),
                  ("Energy.Active.Export.Register", 0))
    sent, held = floor.hold(low)
    assert values_of(sent) == [1200]
    assert values_of(sent, "Power.Active.Import") == [7000]          # not a register: as read
    assert values_of(sent, "Energy.Active.Export.Register") == [0]   # first of its kind
    assert held == [HeldRegister(ENERGY, 1200, 3, "Sample.Periodic")]
    assert held[0].tech_code == BELOW_REPORTED
    assert "read 3 Wh" in held[0].describe() and "1200 Wh" in held[0].describe()
    assert values_of(low) == [3], "the element given is not changed"
    # Equal is fine, higher raises the floor.
    assert floor.hold(element((ENERGY, 1200)))[1] == []
    assert values_of(floor.hold(element((ENERGY, 1250)))[0]) == [1250]
    assert values_of(floor.hold(element((ENERGY, 1249)))[0]) == [1250]
    assert floor.hold(None) == (None, [])


def test_registers_are_held_per_measurand_and_phase() -> None:
    floor = RegisterFloor()
    floor.hold({"timestamp": "t", "sampledValue": [
        {"value": 100, "measurand": ENERGY, "phase": "L1"},
        {"value": 50, "measurand": "Energy.Active.Export.Register"},
        {"value": 400}]})                                   # no measurand: the import register
    sent, held = floor.hold({"timestamp": "t", "sampledValue": [
        {"value": 90, "measurand": ENERGY, "phase": "L1"},
        {"value": 60, "measurand": "Energy.Active.Export.Register"},
        {"value": 399}]})
    assert [s["value"] for s in sent["sampledValue"]] == [100, 60, 400]
    assert [(h.measurand, h.read) for h in held] == [(ENERGY, 90), (ENERGY, 399)]


def test_the_end_gets_the_floor_when_the_meter_cannot_be_read() -> None:
    floor = RegisterFloor()
    floor.hold(element((ENERGY, 5368), ("Power.Active.Import", 11040)))
    end_time = T0 + timedelta(minutes=5)
    # No reading at all (meter fault, bus without power): never 0 Wh, never nothing.
    value, held = floor.fill(None, [ENERGY, "Power.Active.Import"], "Transaction.End",
                             end_time)
    assert value == {"timestamp": "2026-03-01T12:05:00.000Z", "sampledValue": [
        {"value": 5368, "context": "Transaction.End", "measurand": ENERGY}]}
    assert held == [HeldRegister(ENERGY, 5368, None, "Transaction.End")]
    assert held[0].tech_code == NOT_READ
    # A reading without that register gets it added; one with it is left alone.
    partial = element(("Power.Active.Import", 0), context="Transaction.End")
    value, held = floor.fill(partial, [ENERGY, "Power.Active.Import"], "Transaction.End",
                             end_time)
    assert values_of(value) == [5368] and values_of(value, "Power.Active.Import") == [0]
    assert len(held) == 1
    whole = element((ENERGY, 5400), context="Transaction.End")
    assert floor.fill(whole, [ENERGY], "Transaction.End", end_time) == (whole, [])
    # Nothing reported yet, or the register not configured for the end: nothing invented.
    assert RegisterFloor().fill(None, [ENERGY], "Transaction.End", end_time) == (None, [])
    assert floor.fill(None, ["Power.Active.Import"], "Transaction.End", end_time) == (None, [])
    validate("TransactionEvent", "request", {
        "eventType": "Ended", "timestamp": "2026-03-01T12:05:00.000Z",
        "triggerReason": "AbnormalCondition", "seqNo": 3,
        "transactionInfo": {"transactionId": "t1", "stoppedReason": "PowerLoss"},
        "meterValue": [floor.fill(None, [ENERGY], "Transaction.End", end_time)[0]]})


def test_a_start_below_the_previous_end_is_named() -> None:
    floor = RegisterFloor()
    floor.hold(element((ENERGY, 2), context="Transaction.Begin"))
    assert floor.below({}) == []
    assert floor.below({ENERGY: 2}) == []
    found = floor.below({ENERGY: 9000, "Energy.Active.Export.Register": 5})
    assert len(found) == 1 and "2 Wh" in found[0] and "9000 Wh" in found[0]


def test_floor_round_trips_through_json() -> None:
    floor = RegisterFloor({ENERGY: 12.5, "x@L1": 3})
    again = RegisterFloor.from_json(json.loads(json.dumps(floor.to_json())))
    assert again.highest == floor.highest
    assert RegisterFloor.from_json({"bad": "1", "flag": True, ENERGY: 7}).highest == {ENERGY: 7}
    assert RegisterFloor.from_json(None).highest == {}


# -- the sampler applies it -----------------------------------------------------------------

def test_sampler_holds_a_replaced_meter_at_the_reported_value(model: DeviceModel) -> None:
    sampler = TxMeterSampler(model, started_at=T0, phases=3)
    begin = sampler.begin(reading(10_000.0))
    assert values_of(begin) == [10_000]
    updated = sampler.sample(reading(10_184.0, 60), T0 + timedelta(seconds=60))
    assert values_of(updated) == [10_184] and sampler.take_held() == []
    # A technician swaps the meter: the new one shows 3 Wh.
    updated = sampler.sample(reading(3.0, 120, power_w=7000), T0 + timedelta(seconds=120))
    assert values_of(updated) == [10_184]
    assert values_of(updated, "Power.Active.Import") == [7000]
    held = sampler.take_held()
    assert [(h.read, h.sent) for h in held] == [(3, 10_184)] and sampler.take_held() == []
    # It survives a restart (the snapshot is saved with each event), and the end is held.
    again = TxMeterSampler.restore(model, json.loads(json.dumps(sampler.snapshot())))
    ended = again.end(reading(120.0, 180), T0 + timedelta(seconds=180))
    end = [s for v in ended for s in v["sampledValue"] if s["context"] == "Transaction.End"]
    assert [s["value"] for s in end if s["measurand"] == ENERGY] == [10_184]
    assert [h.read for h in again.take_held()] == [120]


def test_sampler_end_without_a_reading_is_the_reported_register(model: DeviceModel) -> None:
    sampler = TxMeterSampler(model, started_at=T0, phases=3)
    sampler.begin(reading(500.0))
    sampler.sample(reading(684.0, 60), T0 + timedelta(seconds=60))
    ended = sampler.end(None, T0 + timedelta(seconds=90))
    assert ended[-1] == {"timestamp": "2026-03-01T12:01:30.000Z", "sampledValue": [
        {"value": 684, "context": "Transaction.End", "measurand": ENERGY}]}
    assert [h.tech_code for h in sampler.take_held()] == [NOT_READ]
    # With sampled data disabled there are no values at all, held or not.
    write(model, "SampledDataCtrlr", "Enabled", "false")
    off = TxMeterSampler(model, started_at=T0, phases=3)
    off.begin(reading(500.0))
    assert off.end(None, T0 + timedelta(seconds=90)) == []


def test_sampler_saved_before_floors_existed_takes_its_floor_from_what_it_recorded(
        model: DeviceModel) -> None:
    write(model, "SampledDataCtrlr", "TxEndedInterval", "60")
    sampler = TxMeterSampler(model, started_at=T0, phases=3)
    sampler.begin(reading(500.0))
    sampler.sample(reading(684.0, 60), T0 + timedelta(seconds=60))
    data = json.loads(json.dumps(sampler.snapshot()))
    del data["floor"]
    again = TxMeterSampler.restore(model, data)
    assert again.floor.highest == {ENERGY: 684}


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(0, 1e7, allow_nan=False)), min_size=1,
                max_size=30),
       st.one_of(st.none(), st.floats(0, 1e7, allow_nan=False)),
       st.lists(st.integers(0, 29), max_size=5))
def test_no_register_sent_for_a_transaction_ever_goes_below_one_sent_before(
        readings: list[float | None], last: float | None, restarts: list[int]) -> None:
    """Any sequence of meter readings (a meter that counts, stalls, is replaced, gives
    nothing), with restarts from the snapshot anywhere: what the CSMS gets never goes
    back, and a reading that does not go back is sent exactly as read."""
    store = Store(Path(":memory:"))
    try:
        spec = StationSpec(vendor="E", model="M", serial_number="1", firmware_version="1",
                           evses=(EvseSpec(1, 32, 3, 230),), security_profile=1)
        model = DeviceModel(store, standard_definitions(spec))
        model.set(Component("SampledDataCtrlr"), Variable("TxEndedInterval"), "60")
        sampler = TxMeterSampler(model, started_at=T0, phases=3)
        sent: list[float] = []
        begin = sampler.begin(None if readings[0] is None else reading(readings[0]))
        sent += values_of(begin)
        for n, wh in enumerate(readings[1:], start=1):
            if n in restarts:
                sampler = TxMeterSampler.restore(model, json.loads(json.dumps(sampler.snapshot())))
            now = T0 + timedelta(seconds=60 * n)
            value = sampler.sample(None if wh is None else reading(wh, 60 * n), now)
            if value is not None:
                floor_before = max(sent, default=None)
                sent += values_of(value)
                if floor_before is None or round(wh) >= floor_before:
                    assert values_of(value) == [round(wh)]    # a good reading, as read
        assert sent == sorted(sent)
        end_time = T0 + timedelta(seconds=60 * len(readings) + 1)
        ended = sampler.end(None if last is None else reading(last, 60 * len(readings) + 1),
                            end_time)
        end = [s["value"] for v in ended for s in v["sampledValue"]
               if s["context"] == "Transaction.End"]
        if sent:
            assert end and min(end) >= max(sent)
        listed = [s["value"] for v in ended for s in v["sampledValue"]]
        assert listed == sorted(listed)     # the Ended list, in time order, never goes back
    finally:
        store.close()


# -- start-up waits for a polled meter's first reading ------------------------------------

class SlowMeter(EnergyMeter):
    """A meter whose first answer comes `delay` s of real time after start (None: never,
    `fault`: a fault instead)."""

    def __init__(self, delay: float | None, fault: str | None = None) -> None:
        super().__init__()
        self._delay, self._fault = delay, fault
        self._task: asyncio.Task[None] | None = None

    async def read(self) -> MeterReading | None:
        return self.latest

    async def start(self) -> None:
        if self._fault is not None:
            self._set_fault(self._fault)
        elif self._delay is not None:
            self._task = asyncio.ensure_future(self._answer())

    async def _answer(self) -> None:
        await asyncio.sleep(self._delay)
        self.latest = reading(7777.0)
        self._changed()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


def hardware_with(meter: EnergyMeter, wait_s: float) -> Hardware:
    return Hardware({1: EvseHardware(1, EvseDevices(meter=meter))}, first_reading_s=wait_s)


def test_start_returns_once_the_meter_has_answered() -> None:
    async def main() -> None:
        meter = SlowMeter(0.05)
        hardware = hardware_with(meter, wait_s=30)
        listeners = len(meter._listeners)     # the EVSE supervisor's
        await asyncio.wait_for(hardware.start(), 10)
        assert meter.latest is not None and meter.latest.energy_import_wh == 7777
        assert len(meter._listeners) == listeners, "start() leaves no listener behind"
        await hardware.stop()
    asyncio.run(main())


def test_start_does_not_wait_for_a_faulted_meter_and_gives_up_on_a_silent_one(
        caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        faulted = hardware_with(SlowMeter(None, fault="no answer from meter"), wait_s=30)
        await asyncio.wait_for(faulted.start(), 5)       # would take 30 s if it waited
        silent = SlowMeter(None)
        hardware = hardware_with(silent, wait_s=0.2)
        with caplog.at_level(logging.WARNING, logger="agent.hardware"):
            await asyncio.wait_for(hardware.start(), 5)
        assert silent.latest is None
        assert any("no reading yet" in r.getMessage() and "EVSE 1" in r.getMessage()
                   for r in caplog.records)
    asyncio.run(main())
