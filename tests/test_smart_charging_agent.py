"""Smart charging reaching the hardware: the agent in this process on a ManualClock (the
CSMS tells the same time), profiles set by the real CSMS peer, the effect read from the
mock hardware through the control socket, as `station-agent sim status` shows it."""

import asyncio
import contextlib
from datetime import datetime, timedelta, timezone

from agent.clock import ManualClock, format_datetime
from agent.demo.csms import Csms
from tests.harness import PASSWORD, InProcessAgent, quiesce, write_config

STATION = "CS-SMART"
VOLTS = 230


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def quiet():
    """Until the agent and the CSMS (in this loop) have done what they would do now."""
    assert await quiesce(), "the agent never went quiet"


class Agent(InProcessAgent):
    def __init__(self, tmp_path, csms, clock, evses=1, dc=False):
        config = write_config(tmp_path, csms.url, station_id=STATION, evses=evses)
        if dc:   # EVSE 1 a 200 A DC output fed by a 3-phase supply
            config.write_text(config.read_text().replace(
                "max_current_a = 32\n", "max_current_a = 200\ndc = true\n", 1))
        super().__init__(config, clock)

    async def evse(self, evse_id):
        return (await self.sim("status"))["status"]["evses"][str(evse_id)]


@contextlib.asynccontextmanager
async def csms_and_clock():
    # 30 s before an AlignedDataCtrlr instant (Interval 900 s), so that every run meets
    # the clock-aligned values the same way instead of one run in 15.
    clock = ManualClock(datetime.now(timezone.utc).replace(minute=14, second=30, microsecond=0))
    async with Csms(passwords={STATION: PASSWORD}, now=clock.now) as csms:
        yield csms, clock


async def connected(csms, after=None):
    link = await csms.wait_station(STATION, timeout=10, after=after)
    await link.expect_call("StatusNotification", timeout=10)
    return link


def profile(profile_id, purpose, periods, *, stack_level=0, unit="A", start=None,
            transaction_id=None, kind="Absolute"):
    schedule = {"id": profile_id, "chargingRateUnit": unit, "chargingSchedulePeriod": [
        {"startPeriod": offset, "limit": limit} for offset, limit in periods]}
    if start is not None:
        schedule["startSchedule"] = format_datetime(start)
    out = {"id": profile_id, "stackLevel": stack_level, "chargingProfilePurpose": purpose,
           "chargingProfileKind": kind, "chargingSchedule": [schedule]}
    if transaction_id is not None:
        out["transactionId"] = transaction_id
    return out


async def set_profile(link, evse_id, charging_profile):
    answer = await link.call("SetChargingProfile", {"evseId": evse_id,
                                                    "chargingProfile": charging_profile})
    assert answer["status"] == "Accepted", answer
    await quiet()


async def start_session(agent, link, evse_id, token="TOKEN1", charging_profile=None):
    request = {"idToken": {"idToken": token, "type": "ISO14443"}, "remoteStartId": evse_id,
               "evseId": evse_id}
    if charging_profile is not None:
        request["chargingProfile"] = charging_profile
    answer = await link.call("RequestStartTransaction", request)
    assert answer["status"] == "Accepted", answer
    await agent.sim("plug", evse_id)
    started = await link.expect_call("TransactionEvent", where=lambda p: (
        p["eventType"] == "Started" and p["evse"]["id"] == evse_id))
    await quiet()
    return started["transactionInfo"]["transactionId"]


def test_tx_default_profile_limits_the_offered_current(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                await set_profile(link, 0, profile(1, "TxDefaultProfile", [(0, 16)],
                                                   start=clock.now() - timedelta(hours=1)))
                status = await agent.evse(1)
                assert status["power_limit_w"] == 16 * 3 * VOLTS
                assert status["offered_current_a"] is None      # nothing plugged: no offer
                answer = await link.call("SetVariables", {"setVariableData": [
                    {"component": {"name": "SampledDataCtrlr"}, "variable": {"name": name},
                     "attributeValue": value} for name, value in (
                        ("TxUpdatedMeasurands",
                         "Energy.Active.Import.Register,Current.Offered,Power.Offered"),
                        ("TxUpdatedInterval", "60"))]})
                assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
                await start_session(agent, link, 1)
                status = await agent.evse(1)
                assert status["offered_current_a"] == 16
                assert status["contactor_closed"] is True
                assert 0 < status["power_w"] <= 16 * 3 * VOLTS
                # Meter values say what is offered. The periodic sample carries the
                # TxUpdatedMeasurands; a clock-aligned one (Interval 900 s) may also fall
                # within these 60 s and carries the AlignedDataCtrlr's measurands instead.
                await agent.advance(60)
                updated = await link.expect_call("TransactionEvent", where=lambda p: (
                    p["eventType"] == "Updated" and p["triggerReason"] == "MeterValuePeriodic"))
                offered = {v["measurand"]: v["value"] for m in updated["meterValue"]
                           for v in m["sampledValue"] if v.get("measurand", "").endswith("Offered")}
                assert offered == {"Current.Offered": 16, "Power.Offered": 16 * 3 * VOLTS}
                # A lower stack level does not matter; a higher one does.
                await set_profile(link, 0, profile(2, "TxDefaultProfile", [(0, 10)],
                                                   stack_level=1, start=clock.now()))
                assert (await agent.evse(1))["offered_current_a"] == 10
                answer = await link.call("GetCompositeSchedule", {"evseId": 1, "duration": 600,
                                                                  "chargingRateUnit": "A"})
                assert answer["status"] == "Accepted"
                periods = answer["schedule"]["chargingSchedulePeriod"]
                assert [(p["startPeriod"], p["limit"]) for p in periods] == [(0, 10)]
                # Cleared: back to the EVSE's own rating.
                answer = await link.call("ClearChargingProfile", {"chargingProfileId": 2})
                assert answer["status"] == "Accepted"
                await quiet()
                assert (await agent.evse(1))["offered_current_a"] == 16
                answer = await link.call("ClearChargingProfile", {"chargingProfileId": 1})
                await quiet()
                assert (await agent.evse(1))["offered_current_a"] == 32
            assert csms.schema_errors == []
    run(main())


def test_tx_profile_changes_the_offer_at_the_scheduled_second(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms)
                tx_id = await start_session(agent, link, 1)
                assert (await agent.evse(1))["offered_current_a"] == 32
                begin = clock.now()
                await set_profile(link, 1, profile(7, "TxProfile", [(0, 20), (600, 8), (900, 0)],
                                                   start=begin, transaction_id=tx_id))
                assert (await agent.evse(1))["offered_current_a"] == 20
                await agent.advance(599)
                assert (await agent.evse(1))["offered_current_a"] == 20
                await agent.advance(1)
                assert (await agent.evse(1))["offered_current_a"] == 8
                # A limit of 0 pauses: no PWM, contactor open, SuspendedEVSE reported.
                await agent.advance(300)
                status = await agent.evse(1)
                assert status["offered_current_a"] is None and status["contactor_closed"] is False
                await link.expect_call("TransactionEvent", where=lambda p: p.get(
                    "transactionInfo", {}).get("chargingState") == "SuspendedEVSE")
                # The transaction ends: its TxProfile goes with it.
                await agent.sim("unplug", 1)
                await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
                await quiet()
                answer = await link.call("GetChargingProfiles", {
                    "requestId": 1, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}})
                assert answer["status"] == "NoProfiles"
            assert csms.schema_errors == []
    run(main())


def test_station_max_is_shared_between_two_evses(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, evses=2) as agent:
                link = await connected(csms)
                # 22,080 W at the grid connection: one EVSE may take all (32 A x 3 x 230).
                await set_profile(link, 0, profile(1, "ChargingStationMaxProfile", [(0, 22080)],
                                                   unit="W", start=clock.now() - timedelta(hours=1)))
                await start_session(agent, link, 1, "TOKEN1")
                assert (await agent.evse(1))["offered_current_a"] == 32
                await start_session(agent, link, 2, "TOKEN2")
                one, two = await agent.evse(1), await agent.evse(2)
                assert one["offered_current_a"] == two["offered_current_a"] == 16
                assert one["power_limit_w"] + two["power_limit_w"] <= 22080
                # EVSE 2 may only take 10 A: EVSE 1 gets the rest of the station's power.
                await set_profile(link, 2, profile(5, "TxDefaultProfile", [(0, 10)],
                                                   start=clock.now()))
                one, two = await agent.evse(1), await agent.evse(2)
                assert two["offered_current_a"] == 10
                assert one["offered_current_a"] == 22
                await agent.sim("unplug", 2)
                await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
                await quiet()
                assert (await agent.evse(1))["offered_current_a"] == 32
            assert csms.schema_errors == []
    run(main())


def test_profiles_survive_a_restart_and_remote_start_brings_its_own(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock):
                link = await connected(csms)
                await set_profile(link, 0, profile(3, "TxDefaultProfile", [(0, 12)],
                                                   start=clock.now() - timedelta(minutes=1)))
            async with Agent(tmp_path, csms, clock) as agent:
                link = await connected(csms, after=link)
                answer = await link.call("GetChargingProfiles", {"requestId": 9, "chargingProfile": {}})
                assert answer["status"] == "Accepted"
                report = await link.expect_call("ReportChargingProfiles")
                assert [p["id"] for p in report["chargingProfile"]] == [3]
                await start_session(agent, link, 1)
                assert (await agent.evse(1))["offered_current_a"] == 12
                await agent.sim("unplug", 1)
                await link.expect_call("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
                # K05: a TxProfile handed over with RequestStartTransaction rules the new
                # transaction (and replaces the default for it).
                tx_profile = profile(4, "TxProfile", [(0, 8)], kind="Relative")
                await start_session(agent, link, 1, charging_profile=tx_profile)
                assert (await agent.evse(1))["offered_current_a"] == 8
            assert csms.schema_errors == []
    run(main())


def test_dc_power_module_follows_the_schedule_at_the_scheduled_second(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, dc=True) as agent:
                link = await connected(csms)
                await set_profile(link, 0, profile(1, "TxDefaultProfile", [(0, 50_000)],
                                                   unit="W", start=clock.now()))
                tx_id = await start_session(agent, link, 1)
                status = await agent.evse(1)
                # The module's set-point: 50 kW at its 1000 V ceiling.
                assert (status["offered_current_a"], status["power_w"]) == (50, 50_000)
                assert status["power_limit_w"] == 50_000 and status["contactor_closed"]
                await set_profile(link, 1, profile(2, "TxProfile", [(0, 30_000), (300, 0)],
                                                   unit="W", start=clock.now(),
                                                   transaction_id=tx_id))
                assert (await agent.evse(1))["power_w"] == 30_000
                await agent.advance(299)
                assert (await agent.evse(1))["power_w"] == 30_000
                await agent.advance(1)
                status = await agent.evse(1)
                assert status["power_w"] == 0 and status["contactor_closed"] is False
                await link.expect_call("TransactionEvent", where=lambda p: p.get(
                    "transactionInfo", {}).get("chargingState") == "SuspendedEVSE")
            assert csms.schema_errors == []
    run(main())


def smart_var(name, value):
    return {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": name},
            "attributeValue": value}


def test_external_limit_is_shared_reported_and_released(tmp_path):
    async def main():
        async with csms_and_clock() as (csms, clock):
            async with Agent(tmp_path, csms, clock, evses=2) as agent:
                link = await connected(csms)
                await start_session(agent, link, 1)
                await start_session(agent, link, 2, token="TOKEN2")
                # ExternalControlSignalsEnabled is false by default: the input is ignored.
                await agent.sim("external-limit", watts=11040, source="SO", grid_critical=True)
                await quiet()
                assert (await agent.evse(1))["offered_current_a"] == 32
                answer = await link.call("SetVariables", {"setVariableData": [
                    smart_var("NotifyChargingLimitWithSchedules", "true"),
                    smart_var("ExternalControlSignalsEnabled", "true")]})
                assert {r["attributeStatus"] for r in answer["setVariableResult"]} == {"Accepted"}
                note = await link.expect_call("NotifyChargingLimit")
                assert note["chargingLimit"] == {"chargingLimitSource": "SO",
                                                 "isGridCritical": True}
                schedule = note["chargingSchedule"][0]
                assert schedule["chargingRateUnit"] == "W"
                assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 11040}]
                await quiet()
                # The station-wide limit is shared: 5520 W each, 8 A on three phases.
                for evse_id in (1, 2):
                    status = await agent.evse(evse_id)
                    assert status["power_limit_w"] == 5520
                    assert status["offered_current_a"] == 8
                # The CSMS sees it as a ChargingStationExternalConstraints profile of
                # source SO, and cannot clear it.
                answer = await link.call("GetChargingProfiles", {"requestId": 9, "chargingProfile": {
                    "chargingLimitSource": ["SO"]}})
                assert answer["status"] == "Accepted"
                report = await link.expect_call("ReportChargingProfiles")
                assert report["chargingLimitSource"] == "SO" and report["evseId"] == 0
                assert [p["chargingProfilePurpose"] for p in report["chargingProfile"]] == [
                    "ChargingStationExternalConstraints"]
                profile_id = report["chargingProfile"][0]["id"]
                answer = await link.call("ClearChargingProfile", {"chargingProfileId": profile_id})
                assert answer["status"] == "Unknown"
                # A move under LimitChangeSignificance (10 %) applies at once, unreported;
                # one above it is reported.
                await agent.sim("external-limit", watts=11592, source="SO", grid_critical=True)
                await quiet()
                assert (await agent.evse(1))["power_limit_w"] == 5796
                await agent.sim("external-limit", watts=13800, source="SO", grid_critical=True)
                note = await link.expect_call("NotifyChargingLimit")
                assert note["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 13800
                assert len(link.calls("NotifyChargingLimit")) == 2
                # Released: ClearedChargingLimit, and the EVSEs are back at their rating.
                await agent.sim("external-limit", watts=None)
                cleared = await link.expect_call("ClearedChargingLimit")
                assert cleared == {"chargingLimitSource": "SO"}
                await quiet()
                assert (await agent.evse(1))["offered_current_a"] == 32
            assert csms.schema_errors == []
    run(main())
