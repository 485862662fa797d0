"""Part 6, J Meter values: the Charging Station cases of Core (Part 5, 4.2), with the
2023-12 errata (6.1.23: MeterValuesRequest, never NotifyEvent instead).

The station has an energy meter per EVSE (mock: energy, power, current, voltage), no
signing meter (C-42: TC_J_04 and TC_J_11 do not apply) and AlignedDataCtrlr.SendDuringIdle
(C-28: TC_J_06 applies). Every card reader belongs to one EVSE and RequestStartTransaction
without an evseId is given a free EVSE at once, so the EVSE is always known when a
transaction starts (AQ-8 "yes"): TC_J_08 does not apply.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from agent.clock import parse_datetime
from tests.conformance.rig import EVSE, Rig, run, station
from tests.conformance.test_e_transactions import (TRANSACTION_DURATION, Since,
                                                   charging_session, points)

ENERGY = "Energy.Active.Import.Register"
#: <Configured clock-aligned Meter Values interval> and the others, in seconds.
ALIGNED_INTERVAL = 60
ALIGNED_TX_ENDED_INTERVAL = 60
SAMPLED_UPDATED_INTERVAL = 30
SAMPLED_TX_ENDED_INTERVAL = 30
#: The configured measurands (Part 6: "an element per configured measurand").
MEASURANDS = f"{ENERGY},Voltage"


def measurands(meter_value: dict) -> set[str]:
    """The measurands of one meterValue (Energy.Active.Import.Register may be omitted)."""
    return {s.get("measurand", ENERGY) for s in meter_value["sampledValue"]}


def assert_measurands(meter_value: dict, configured: str = MEASURANDS) -> None:
    assert measurands(meter_value) == set(configured.split(","))


def assert_intervals(stamps: list[str], seconds: int) -> None:
    """The post scenario validation: the timestamps are the configured interval apart."""
    times = [parse_datetime(t) for t in stamps]
    assert len(times) >= 2, stamps
    for a, b in zip(times, times[1:]):
        assert b - a == timedelta(seconds=seconds), stamps


def contexts(meter_value: dict) -> set[str]:
    return {s.get("context", "Sample.Periodic") for s in meter_value["sampledValue"]}


async def stop_session(rig: Rig) -> dict:
    """ParkingBayUnoccupied without a bay sensor: StopAuthorized (local) and
    EVDisconnected; returns the Ended event."""
    since = Since(rig)
    await rig.present()
    await rig.unplug()
    return await since.expect("TransactionEvent", lambda p: p["eventType"] == "Ended")


def meter_values_of(rig: Rig, evse: int = EVSE) -> list[dict]:
    return [p for p in rig.sent_on_all_links("MeterValues") if p["evseId"] == evse]


def test_TC_J_01(tmp_path):
    """Clock-aligned Meter Values - No transaction ongoing"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS})
            await rig.advance(3 * ALIGNED_INTERVAL, step=10)
            sent = meter_values_of(rig)
            assert len(sent) == 3
            for payload in sent:
                value = payload["meterValue"][0]
                assert value["sampledValue"][0]["context"] == "Sample.Clock"
                assert_measurands(value)
            stamps = [p["meterValue"][0]["timestamp"] for p in sent]
            assert_intervals(stamps, ALIGNED_INTERVAL)
            assert parse_datetime(stamps[0]).timestamp() % ALIGNED_INTERVAL == 0
    run(case())


def test_TC_J_02(tmp_path):
    """Clock-aligned Meter Values - Transaction ongoing"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS,
                                 ("AlignedDataCtrlr", "SendDuringIdle"): "false"})
            tx_id = await charging_session(rig)              # EnergyTransferStarted
            idle_sent = len(meter_values_of(rig))
            since = Since(rig)
            await rig.advance(3 * ALIGNED_INTERVAL, step=10)
            clock = [e for e in since("TransactionEvent")
                     if e["triggerReason"] == "MeterValueClock"]
            assert len(clock) == 3
            for event in clock:
                assert event["eventType"] == "Updated"
                assert event["transactionInfo"]["transactionId"] == tx_id
                value = event["meterValue"][0]
                assert value["sampledValue"][0]["context"] == "Sample.Clock"
                assert_measurands(value)
            assert_intervals([e["meterValue"][0]["timestamp"] for e in clock], ALIGNED_INTERVAL)
            # This EVSE's values go in the transaction, not in MeterValues.
            assert len(meter_values_of(rig)) == idle_sent
    run(case())


def test_TC_J_02_two_evses(tmp_path):
    """Clock-aligned Meter Values - Transaction ongoing (two EVSEs: the idle one still
    sends MeterValues, at the same instants)"""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS})
            await charging_session(rig)
            since = Since(rig)
            idle_before = len(meter_values_of(rig, 2))
            await rig.advance(2 * ALIGNED_INTERVAL, step=10)
            clock = [e for e in since("TransactionEvent")
                     if e["triggerReason"] == "MeterValueClock"]
            idle = meter_values_of(rig, 2)[idle_before:]
            assert len(clock) == len(idle) == 2
            assert [e["meterValue"][0]["timestamp"] for e in clock] == \
                [p["meterValue"][0]["timestamp"] for p in idle]
            assert meter_values_of(rig, 1) == [] or all(
                parse_datetime(p["meterValue"][0]["timestamp"])
                < parse_datetime(clock[0]["meterValue"][0]["timestamp"])
                for p in meter_values_of(rig, 1))
    run(case())


def test_TC_J_03(tmp_path):
    """Clock-aligned Meter Values - EventType Ended"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({
                ("AlignedDataCtrlr", "TxEndedInterval"): str(ALIGNED_TX_ENDED_INTERVAL),
                ("AlignedDataCtrlr", "TxEndedMeasurands"): MEASURANDS,
                ("AlignedDataCtrlr", "SendDuringIdle"): "false"})
            await charging_session(rig)
            await rig.advance(4 * ALIGNED_TX_ENDED_INTERVAL, step=10)
            ended = await stop_session(rig)
            assert "meterValue" in ended
            clock = [v for v in ended["meterValue"] if "Sample.Clock" in contexts(v)]
            assert len(clock) >= 3
            for value in clock:
                aligned = {"sampledValue": [s for s in value["sampledValue"]
                                            if s.get("context") == "Sample.Clock"]}
                assert aligned["sampledValue"][0]["context"] == "Sample.Clock"
                assert_measurands(aligned)
            assert_intervals([v["timestamp"] for v in clock], ALIGNED_TX_ENDED_INTERVAL)
    run(case())


def test_TC_J_04(tmp_path):
    """Clock-aligned Meter Values - Signed"""
    pytest.skip("not applicable: no signing meter (signed meter values, C-42)")


def test_TC_J_06(tmp_path):
    """Clock-aligned Meter Values - No Meter Values during transaction"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS,
                                 ("AlignedDataCtrlr", "SendDuringIdle"): "true",
                                 # no sampled values in between either: the case checks
                                 # that no TransactionEvent carries a meterValue then
                                 ("SampledDataCtrlr", "TxUpdatedInterval"): "0"})
            await rig.advance(ALIGNED_INTERVAL, step=10)     # 1. idle: MeterValues
            idle = meter_values_of(rig)
            assert len(idle) == 1
            assert idle[0]["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
            assert_measurands(idle[0]["meterValue"][0])
            since = Since(rig)
            tx_id = await charging_session(rig)              # 3. EnergyTransferStarted
            started = len(since("TransactionEvent"))
            await rig.advance(2 * ALIGNED_INTERVAL + 5, step=5)   # 4.
            during = since("TransactionEvent")[started:]
            assert all("meterValue" not in e for e in during), during
            assert len(meter_values_of(rig)) == 1
            ended = await stop_session(rig)                  # 6. ParkingBayUnoccupied
            assert ended["transactionInfo"]["transactionId"] == tx_id
            await rig.advance(2 * ALIGNED_INTERVAL, step=10)  # 7. idle again
            after = meter_values_of(rig)[1:]
            assert len(after) == 2
            for payload in after:
                assert payload["meterValue"][0]["sampledValue"][0]["context"] == "Sample.Clock"
                assert_measurands(payload["meterValue"][0])
            assert_intervals([p["meterValue"][0]["timestamp"] for p in after], ALIGNED_INTERVAL)
    run(case())


def test_TC_J_07(tmp_path):
    """Sampled Meter Values - EventType Started - EVSE known"""
    async def case():
        async with station(tmp_path) as rig:
            await points(rig, start="EVConnected")
            await rig.configure({("SampledDataCtrlr", "TxStartedMeasurands"): MEASURANDS})
            since = Since(rig)
            await rig.ev_connected_pre_session()             # 1. EVConnectedPreSession
            started = await since.expect("TransactionEvent")
            assert started["eventType"] == "Started"
            assert started["evse"]["id"] == EVSE
            value = started["meterValue"][0]
            assert value["sampledValue"][0]["context"] == "Transaction.Begin"
            assert_measurands(value)
            await rig.present()                              # 2. EnergyTransferStarted
            await rig.advance(1)
            await since.expect("TransactionEvent", lambda p: (
                p["transactionInfo"].get("chargingState") == "Charging"))
    run(case())


def test_TC_J_08(tmp_path):
    """Sampled Meter Values - Context Transaction.Begin - EVSE not known"""
    pytest.skip("not applicable: the EVSE is always known when a transaction starts (every "
                "card reader belongs to one EVSE; AQ-8)")


def test_TC_J_09(tmp_path):
    """Sampled Meter Values - EventType Updated"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({
                ("SampledDataCtrlr", "TxUpdatedInterval"): str(SAMPLED_UPDATED_INTERVAL),
                ("SampledDataCtrlr", "TxUpdatedMeasurands"): MEASURANDS})
            await charging_session(rig)
            since = Since(rig)
            await rig.advance(TRANSACTION_DURATION * 2, step=5)
            periodic = [e for e in since("TransactionEvent")
                        if e["triggerReason"] == "MeterValuePeriodic"]
            assert len(periodic) >= 3
            for event in periodic:
                value = event["meterValue"][0]
                assert value["sampledValue"][0]["context"] == "Sample.Periodic"
                assert_measurands(value)
            assert_intervals([e["meterValue"][0]["timestamp"] for e in periodic],
                             SAMPLED_UPDATED_INTERVAL)
    run(case())


def test_TC_J_10(tmp_path):
    """Sampled Meter Values - EventType Ended"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({
                ("SampledDataCtrlr", "TxEndedInterval"): str(SAMPLED_TX_ENDED_INTERVAL),
                ("SampledDataCtrlr", "TxEndedMeasurands"): MEASURANDS})
            await charging_session(rig)
            await rig.advance(TRANSACTION_DURATION * 2, step=5)
            ended = await stop_session(rig)
            assert "meterValue" in ended
            periodic = [v for v in ended["meterValue"] if "Sample.Periodic" in contexts(v)]
            assert len(periodic) >= 3
            for value in periodic:
                assert value["sampledValue"][0]["context"] == "Sample.Periodic"
                assert_measurands(value)
            assert_intervals([v["timestamp"] for v in periodic], SAMPLED_TX_ENDED_INTERVAL)
            end = [v for v in ended["meterValue"] if "Transaction.End" in contexts(v)]
            assert len(end) == 1
            assert_measurands(end[0])
    run(case())


def test_TC_J_11(tmp_path):
    """Sampled Meter Values - Signed"""
    pytest.skip("not applicable: no signing meter (signed meter values, C-42)")
