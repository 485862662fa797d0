"""Part 6, J Meter values: the Charging Station cases of Core (Part 5, 4.2), with the
2023-12 errata (6.1.23: MeterValuesRequest, never NotifyEvent instead; 2.9.2: J02.FR.10).

The station has an energy meter per EVSE (mock: energy, power, current, voltage), no
signing meter (C-42: TC_J_04 and TC_J_11 do not apply) and AlignedDataCtrlr.SendDuringIdle
(C-28: TC_J_06 applies). Every card reader belongs to one EVSE and RequestStartTransaction
without an evseId is given a free EVSE at once, so the EVSE is always known when a
transaction starts (AQ-8 "yes"): TC_J_08 does not apply.

The configured measurands are every measurand the station offers (the valuesList of the
*Measurands variables): the tool validation "an element per configured measurand" then
checks each one the device model claims, Current.Offered and Power.Offered included.
Each case first sets the station's clock to a fixed time (as a CSMS may, B01), so the
sampling instants, and which of them a case spans, are the same on every run.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from agent.blocks.metering.timing import next_aligned
from agent.clock import parse_datetime
from agent.model.types import DEFAULT_MEASURANDS
from tests.conformance.fj_steps import (TRANSACTION_DURATION, Since, charging_session,
                                        points, station)
from tests.conformance.rig import CONNECTOR, EVSE, VALID_TOKEN, Rig, run

ENERGY = "Energy.Active.Import.Register"
#: <Configured clock-aligned Meter Values interval> and the others, in seconds.
ALIGNED_INTERVAL = 60
ALIGNED_TX_ENDED_INTERVAL = 60
SAMPLED_UPDATED_INTERVAL = 30
SAMPLED_TX_ENDED_INTERVAL = 30
#: The configured measurands (Part 6: "an element per configured measurand").
MEASURANDS = ",".join(DEFAULT_MEASURANDS)
#: The station's clock at the start of each case: a quarter of a second past a minute,
#: so no transaction event ever falls on a clock-aligned instant by chance.
START = datetime(2026, 3, 2, 9, 0, 10, 250000, tzinfo=timezone.utc)


def fix_time(rig: Rig) -> None:
    """The station's clock at START, and the OCTT's with it (its Heartbeat answers set
    the station's clock again: B01 keeps it in sync)."""
    rig.clock.set_time(START)
    rig.csms.now = rig.clock.now


def measurands(meter_value: dict) -> set[str]:
    """The measurands of one meterValue (Energy.Active.Import.Register may be omitted)."""
    return {s.get("measurand", ENERGY) for s in meter_value["sampledValue"]}


def assert_measurands(meter_value: dict, configured: str = MEASURANDS) -> None:
    assert measurands(meter_value) == set(configured.split(",")), meter_value


def assert_context(meter_value: dict, context: str) -> None:
    """sampledValue[0].context, as Part 6 reads it; and every other element of the same
    meterValue agrees (one meterValue is one sampling moment)."""
    assert meter_value["sampledValue"][0]["context"] == context, meter_value
    assert {s.get("context", "Sample.Periodic") for s in meter_value["sampledValue"]} \
        == {context}, meter_value


def assert_intervals(stamps: list[str], seconds: int) -> None:
    """The post scenario validation: the timestamps are the configured interval apart."""
    times = [parse_datetime(t) for t in stamps]
    assert len(times) >= 2, stamps
    for a, b in zip(times, times[1:]):
        assert b - a == timedelta(seconds=seconds), stamps


def aligned_between(start: datetime, end: datetime, interval: int) -> list[datetime]:
    """The clock-aligned instants in (start, end]."""
    instants = []
    at = next_aligned(start, interval)
    while at <= end:
        instants.append(at)
        at = next_aligned(at, interval)
    return instants


def stamps(values: list[dict]) -> list[datetime]:
    return [parse_datetime(v["timestamp"]) for v in values]


def contexts(meter_value: dict) -> set[str]:
    return {s.get("context", "Sample.Periodic") for s in meter_value["sampledValue"]}


async def stop_session(rig: Rig, tx_id: str) -> dict:
    """ParkingBayUnoccupied (no bay sensor: its own step does not apply), by way of
    StopAuthorized (local, main A) and EVDisconnected, with their tool validations;
    returns the Ended event."""
    since = Since(rig)
    await rig.present()
    stop = await since.expect("TransactionEvent")          # StopAuthorized step 1
    assert stop["transactionInfo"]["transactionId"] == tx_id
    assert stop["triggerReason"] == "StopAuthorized"
    assert stop.get("idToken", VALID_TOKEN) == VALID_TOKEN
    # TxStopPoint (default EVConnected,Authorized) contains Authorized: this ends it.
    assert stop["eventType"] == "Ended"
    assert stop["transactionInfo"].get("stoppedReason", "Local") == "Local"
    await rig.unplug()                                      # EVDisconnected step 1
    status = await since.expect("StatusNotification")
    assert status["connectorStatus"] == "Available"
    assert (status["evseId"], status["connectorId"]) == (EVSE, CONNECTOR)
    assert len(since("TransactionEvent")) == 1              # it had ended already
    return stop


def meter_values_of(rig: Rig, evse: int = EVSE) -> list[dict]:
    return [p for p in rig.sent_on_all_links("MeterValues") if p["evseId"] == evse]


def test_TC_J_01(tmp_path):
    """Clock-aligned Meter Values - No transaction ongoing"""
    async def case():
        async with station(tmp_path) as rig:
            fix_time(rig)
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS})
            begin = rig.clock.now()
            await rig.advance(3 * ALIGNED_INTERVAL, step=10)
            sent = rig.sent_on_all_links("MeterValues")
            assert [p["evseId"] for p in sent] == [EVSE] * 3   # one EVSE, no main meter
            for payload in sent:
                assert len(payload["meterValue"]) == 1
                value = payload["meterValue"][0]
                assert_context(value, "Sample.Clock")
                assert_measurands(value)
            # The configured instants, each value stamped with its own.
            assert stamps([p["meterValue"][0] for p in sent]) == aligned_between(
                begin, rig.clock.now(), ALIGNED_INTERVAL)
            assert_intervals([p["meterValue"][0]["timestamp"] for p in sent], ALIGNED_INTERVAL)
            assert rig.sent_on_all_links("NotifyEvent") == [] or all(
                e["component"]["name"] != "FiscalMetering"
                for n in rig.sent_on_all_links("NotifyEvent") for e in n["eventData"])
    run(case())


def test_TC_J_02(tmp_path):
    """Clock-aligned Meter Values - Transaction ongoing"""
    async def case():
        async with station(tmp_path) as rig:
            fix_time(rig)
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS,
                                 ("AlignedDataCtrlr", "SendDuringIdle"): "false"})
            tx_id = await charging_session(rig)              # EnergyTransferStarted
            idle_sent = len(meter_values_of(rig))
            since = Since(rig)
            begin = rig.clock.now()
            await rig.advance(TRANSACTION_DURATION, step=10)  # <Configured transaction duration>
            clock = [e for e in since("TransactionEvent")
                     if e["triggerReason"] == "MeterValueClock"]
            # Step 3 at every instant: this EVSE's values go in its transaction.
            assert [parse_datetime(e["meterValue"][0]["timestamp"]) for e in clock] == \
                aligned_between(begin, rig.clock.now(), ALIGNED_INTERVAL)
            assert len(clock) == TRANSACTION_DURATION // ALIGNED_INTERVAL
            for event in clock:
                assert event["eventType"] == "Updated"
                assert event["transactionInfo"]["transactionId"] == tx_id
                assert len(event["meterValue"]) == 1
                value = event["meterValue"][0]
                assert_context(value, "Sample.Clock")
                assert_measurands(value)
            assert_intervals([e["meterValue"][0]["timestamp"] for e in clock], ALIGNED_INTERVAL)
            # Not twice: no MeterValues for the EVSE of the transaction meanwhile.
            assert len(meter_values_of(rig)) == idle_sent
    run(case())


def test_TC_J_02_two_evses(tmp_path):
    """Clock-aligned Meter Values - Transaction ongoing (two EVSEs: the idle one still
    sends MeterValues, at the same instants)"""
    async def case():
        async with station(tmp_path, evses=2) as rig:
            fix_time(rig)
            await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                                 ("AlignedDataCtrlr", "Measurands"): MEASURANDS,
                                 ("AlignedDataCtrlr", "SendDuringIdle"): "false"})
            await charging_session(rig)
            since = Since(rig)
            idle_before = len(meter_values_of(rig, 2))
            busy_before = len(meter_values_of(rig, 1))
            await rig.advance(2 * ALIGNED_INTERVAL, step=10)
            clock = [e for e in since("TransactionEvent")
                     if e["triggerReason"] == "MeterValueClock"]
            idle = meter_values_of(rig, 2)[idle_before:]
            assert len(clock) == len(idle) == 2
            # The post scenario validation: one timestamp per interval for every message.
            assert [e["meterValue"][0]["timestamp"] for e in clock] == \
                [p["meterValue"][0]["timestamp"] for p in idle]
            for payload in idle:
                assert_context(payload["meterValue"][0], "Sample.Clock")
                assert_measurands(payload["meterValue"][0])
            assert len(meter_values_of(rig, 1)) == busy_before
    run(case())


def test_TC_J_03(tmp_path):
    """Clock-aligned Meter Values - EventType Ended"""
    async def case():
        async with station(tmp_path) as rig:
            fix_time(rig)
            await rig.configure({
                ("AlignedDataCtrlr", "TxEndedInterval"): str(ALIGNED_TX_ENDED_INTERVAL),
                ("AlignedDataCtrlr", "TxEndedMeasurands"): MEASURANDS,
                ("AlignedDataCtrlr", "SendDuringIdle"): "false"})
            tx_id = await charging_session(rig)
            started = rig.transaction_events(tx_id)[0]
            await rig.advance(TRANSACTION_DURATION, step=10)
            ended = await stop_session(rig, tx_id)
            assert "meterValue" in ended
            # The Ended event also carries the SampledDataCtrlr.TxEndedMeasurands at the
            # start and the end (Transaction.Begin / .End, the station's default): Part 6
            # names no SampledDataCtrlr setting here, so a lab reads the Sample.Clock
            # elements for this case (and TC_J_10's for the sampled ones).
            clock = [v for v in ended["meterValue"] if "Sample.Clock" in contexts(v)]
            # An element per instant of the interval the transaction spanned.
            assert stamps(clock) == aligned_between(
                parse_datetime(started["timestamp"]), parse_datetime(ended["timestamp"]),
                ALIGNED_TX_ENDED_INTERVAL)
            assert len(clock) == TRANSACTION_DURATION // ALIGNED_TX_ENDED_INTERVAL
            for value in clock:
                assert_context(value, "Sample.Clock")
                assert_measurands(value)
            assert_intervals([v["timestamp"] for v in clock], ALIGNED_TX_ENDED_INTERVAL)
            others = [v for v in ended["meterValue"] if v not in clock]
            assert [sorted(contexts(v)) for v in others] == [["Transaction.Begin"],
                                                             ["Transaction.End"]]
    run(case())


def test_TC_J_04(tmp_path):
    """Clock-aligned Meter Values - Signed"""
    pytest.skip("not applicable: no signing meter (signed meter values, C-42)")


def assert_no_clock_values(events: list[dict]) -> None:
    for event in events:
        assert event["triggerReason"] != "MeterValueClock", event
        for value in event.get("meterValue", []):
            assert "Sample.Clock" not in contexts(value), event


async def run_j_06(rig: Rig) -> tuple[list[dict], dict]:
    """TC_J_06's steps 1-7; returns the TransactionEvents of steps 3-4 and the Ended."""
    fix_time(rig)
    await rig.configure({("AlignedDataCtrlr", "Interval"): str(ALIGNED_INTERVAL),
                         ("AlignedDataCtrlr", "Measurands"): MEASURANDS,
                         ("AlignedDataCtrlr", "SendDuringIdle"): "true"})
    await rig.advance(ALIGNED_INTERVAL, step=10)              # 1. idle: MeterValues
    idle = meter_values_of(rig)
    assert len(idle) == 1
    assert_context(idle[0]["meterValue"][0], "Sample.Clock")
    assert_measurands(idle[0]["meterValue"][0])
    since = Since(rig)
    tx_id = await charging_session(rig)                       # 3. EnergyTransferStarted
    await rig.advance(ALIGNED_INTERVAL + 5, step=5)           # 4. then interval + 5 s
    during = since("TransactionEvent")
    assert len(meter_values_of(rig)) == 1                     # no MeterValues at all
    ended = await stop_session(rig, tx_id)                    # 6. ParkingBayUnoccupied
    await rig.advance(2 * ALIGNED_INTERVAL, step=10)          # 7. idle again
    after = meter_values_of(rig)[1:]
    assert len(after) == 2
    for payload in after:
        assert_context(payload["meterValue"][0], "Sample.Clock")
        assert_measurands(payload["meterValue"][0])
    assert_intervals([p["meterValue"][0]["timestamp"] for p in after], ALIGNED_INTERVAL)
    return during, ended


def test_TC_J_06(tmp_path):
    """Clock-aligned Meter Values - No Meter Values during transaction"""
    async def case():
        async with station(tmp_path) as rig:
            during, _ = await run_j_06(rig)
            # Part 6's post scenario validation lists "TransactionEventRequest containing
            # the MeterValue field" among what must not come during steps 3-4. Read with
            # the case's purpose ("only send clock-aligned Meter Values when there is no
            # ongoing transaction") and the variable it tests (AlignedDataSendDuringIdle,
            # appendix 2: no *clock aligned* values while a transaction is ongoing): with
            # the station's SampledDataCtrlr as it is (the case configures none of it),
            # no clock-aligned value is sent; the sampled ones (J02) go on. With sampled
            # data off the literal reading holds too: test_TC_J_06_sampled_data_off.
            assert during
            assert_no_clock_values(during)
    run(case())


def test_TC_J_06_sampled_data_off(tmp_path):
    """Clock-aligned Meter Values - No Meter Values during transaction (SampledDataCtrlr
    off: Part 6's literal post scenario validation, no TransactionEvent of steps 3-4
    carries a meterValue)"""
    async def case():
        async with station(tmp_path) as rig:
            await rig.configure({("SampledDataCtrlr", "Enabled"): "false"})
            during, _ = await run_j_06(rig)
            assert during
            assert [e for e in during if "meterValue" in e] == []
    run(case())


def assert_in_sampling_interval(event: dict, interval: int) -> None:
    """J02.FR.10 (errata 2.9.2): a Started/Updated event's meterValue timestamps lie in
    (event timestamp - SampledDataTxUpdatedInterval, event timestamp]."""
    at = parse_datetime(event["timestamp"])
    for value in event["meterValue"]:
        assert at - timedelta(seconds=interval) < parse_datetime(value["timestamp"]) <= at, \
            event


def test_TC_J_07(tmp_path):
    """Sampled Meter Values - EventType Started - EVSE known"""
    async def case():
        async with station(tmp_path) as rig:
            fix_time(rig)
            await points(rig, start="EVConnected")
            await rig.configure({("SampledDataCtrlr", "TxStartedMeasurands"): MEASURANDS})
            since = Since(rig)
            await rig.advance(600)           # the meter's last reading is long past
            await rig.ev_connected_pre_session()             # 1. EVConnectedPreSession
            started = await since.expect("TransactionEvent")
            assert started["eventType"] == "Started"
            assert started["triggerReason"] == "CablePluggedIn"
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert started["evse"] == {"id": EVSE, "connectorId": CONNECTOR}
            # Post scenario validations.
            assert started["meterValue"]
            value = started["meterValue"][0]
            assert_context(value, "Transaction.Begin")
            assert_measurands(value)
            interval = int(await rig.get_variable("SampledDataCtrlr", "TxUpdatedInterval"))
            assert_in_sampling_interval(started, interval)
            # 2. EnergyTransferStarted: first Authorized (local, main A), then part 2.
            await rig.present()
            assert (await since.expect("Authorize"))["idToken"] == VALID_TOKEN
            authorized = await since.expect("TransactionEvent", lambda p: p["seqNo"] == 1)
            assert authorized["triggerReason"] == "Authorized"
            assert authorized["idToken"] == VALID_TOKEN
            await rig.advance(1)
            charging = await since.expect("TransactionEvent", lambda p: (
                p["transactionInfo"].get("chargingState") == "Charging"))
            assert charging["triggerReason"] == "ChargingStateChanged"
    run(case())


def test_TC_J_08(tmp_path):
    """Sampled Meter Values - Context Transaction.Begin - EVSE not known"""
    pytest.skip("not applicable: the EVSE is always known when a transaction starts (every "
                "card reader belongs to one EVSE; AQ-8)")


def test_TC_J_09(tmp_path):
    """Sampled Meter Values - EventType Updated"""
    async def case():
        async with station(tmp_path) as rig:
            fix_time(rig)
            await rig.configure({
                ("SampledDataCtrlr", "TxUpdatedInterval"): str(SAMPLED_UPDATED_INTERVAL),
                ("SampledDataCtrlr", "TxUpdatedMeasurands"): MEASURANDS})
            tx_id = await charging_session(rig)
            start = parse_datetime(rig.transaction_events(tx_id)[0]["timestamp"])
            since = Since(rig)
            await rig.advance(TRANSACTION_DURATION, step=5)
            periodic = [e for e in since("TransactionEvent")
                        if e["triggerReason"] == "MeterValuePeriodic"]
            # Every interval from the start of the transaction (J02.FR.02).
            assert stamps([e["meterValue"][0] for e in periodic]) == [
                start + timedelta(seconds=k * SAMPLED_UPDATED_INTERVAL)
                for k in range(1, TRANSACTION_DURATION // SAMPLED_UPDATED_INTERVAL + 1)]
            for event in periodic:
                assert event["eventType"] == "Updated"
                assert event["transactionInfo"]["transactionId"] == tx_id
                assert len(event["meterValue"]) == 1
                value = event["meterValue"][0]
                assert_context(value, "Sample.Periodic")
                assert_measurands(value)
                assert_in_sampling_interval(event, SAMPLED_UPDATED_INTERVAL)
            assert_intervals([e["meterValue"][0]["timestamp"] for e in periodic],
                             SAMPLED_UPDATED_INTERVAL)
    run(case())


def test_TC_J_10(tmp_path):
    """Sampled Meter Values - EventType Ended"""
    async def case():
        async with station(tmp_path) as rig:
            fix_time(rig)
            await rig.configure({
                ("SampledDataCtrlr", "TxEndedInterval"): str(SAMPLED_TX_ENDED_INTERVAL),
                ("SampledDataCtrlr", "TxEndedMeasurands"): MEASURANDS})
            tx_id = await charging_session(rig)
            start = parse_datetime(rig.transaction_events(tx_id)[0]["timestamp"])
            await rig.advance(TRANSACTION_DURATION, step=5)
            ended = await stop_session(rig, tx_id)
            assert "meterValue" in ended
            periodic = [v for v in ended["meterValue"] if "Sample.Periodic" in contexts(v)]
            # An element per data collection moment: every interval from the start.
            assert stamps(periodic) == [
                start + timedelta(seconds=k * SAMPLED_TX_ENDED_INTERVAL)
                for k in range(1, TRANSACTION_DURATION // SAMPLED_TX_ENDED_INTERVAL + 1)]
            for value in periodic:
                assert_context(value, "Sample.Periodic")
                assert_measurands(value)
            assert_intervals([v["timestamp"] for v in periodic], SAMPLED_TX_ENDED_INTERVAL)
            end = [v for v in ended["meterValue"] if "Transaction.End" in contexts(v)]
            assert len(end) == 1 and end[0] is ended["meterValue"][-1]
            assert_context(end[0], "Transaction.End")
            assert_measurands(end[0])
            assert end[0]["timestamp"] == ended["timestamp"]
            # The rest: the start (Transaction.Begin) and the AlignedDataCtrlr's
            # default TxEndedInterval (900 s: no instant inside these three minutes).
            assert [sorted(contexts(v)) for v in ended["meterValue"]
                    if v not in periodic and v not in end] == [["Transaction.Begin"]]
    run(case())


def test_TC_J_11(tmp_path):
    """Sampled Meter Values - Signed"""
    pytest.skip("not applicable: no signing meter (signed meter values, C-42)")
