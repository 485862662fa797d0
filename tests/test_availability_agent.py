"""Availability on the real agent process: ChangeAvailability from the CSMS, faults from
`station-agent sim`, and what a restart keeps."""

import asyncio
import json

from agent.demo.csms import Csms
from tests.harness import PASSWORD, AgentProcess, write_config
from tests.test_sim_agent import sim_async, wait_for_socket

STATION = "CS-TEST"


def frame_index(link, predicate):
    for i, frame in enumerate(link.frames):
        message = json.loads(frame.text)
        if predicate(frame.direction, message):
            return i
    raise AssertionError("no such frame")


async def get_variable(link, component, variable):
    answer = await link.call("GetVariables", {"getVariableData": [
        {"component": component, "variable": {"name": variable}}]})
    return answer["getVariableResult"][0]["attributeValue"]


def status_of(evse, status):
    return lambda p: p["evseId"] == evse and p["connectorStatus"] == status


def test_change_availability_faults_and_restart(tmp_path):
    async def main():
        async with Csms(passwords={STATION: PASSWORD}) as csms:
            config = write_config(tmp_path, csms.url, evses=2)
            agent = await AgentProcess(config).start()
            try:
                link = await csms.wait_station(STATION, timeout=10)
                await link.expect_call("StatusNotification", where=status_of(2, "Available"))
                await wait_for_socket(config)

                # EVSE 2 out of service: answered first, then reported.
                answer = await link.call("ChangeAvailability", {
                    "operationalStatus": "Inoperative", "evse": {"id": 2}})
                assert answer == {"status": "Accepted"}
                await link.expect_call("StatusNotification", where=status_of(2, "Unavailable"))
                answered = frame_index(link, lambda d, m: d == "in" and m[0] == 3
                                       and m[2] == {"status": "Accepted"})
                reported = frame_index(link, lambda d, m: d == "in" and m[0] == 2
                                       and m[2] == "StatusNotification"
                                       and m[3]["connectorStatus"] == "Unavailable")
                assert answered < reported
                assert await get_variable(link, {"name": "EVSE", "evse": {"id": 2}},
                                          "AvailabilityState") == "Unavailable"
                assert await get_variable(link, {"name": "ChargingStation"},
                                          "AvailabilityState") == "Available"
                answer = await link.call("ChangeAvailability", {
                    "operationalStatus": "Inoperative", "evse": {"id": 7}})
                assert answer["status"] == "Rejected"
                assert answer["statusInfo"]["reasonCode"] == "UnknownEvse"

                # A hardware fault on EVSE 1 and its end.
                assert (await sim_async(config, "fault", "1")).returncode == 0
                raised = await link.expect_call("NotifyEvent", timeout=10)
                [event] = raised["eventData"]
                assert event["component"] == {"name": "EVSE", "evse": {"id": 1}}
                assert event["variable"] == {"name": "Problem"}
                assert (event["actualValue"], event["techCode"]) == ("true", "pilot")
                assert event["eventNotificationType"] == "HardWiredNotification"
                await link.expect_call("StatusNotification", where=status_of(1, "Faulted"))
                assert await get_variable(link, {"name": "EVSE", "evse": {"id": 1}},
                                          "Problem") == "true"
                assert (await sim_async(config, "clear", "1")).returncode == 0
                cleared = (await link.expect_call("NotifyEvent", timeout=10))["eventData"][0]
                assert cleared["cleared"] is True and cleared["actualValue"] == "false"
                assert cleared["eventId"] != event["eventId"]
                await link.expect_call("StatusNotification", where=status_of(1, "Available"))

                # The station out of service while EVSE 1 charges: Scheduled, then done
                # when the transaction ends.
                assert (await sim_async(config, "swipe", "04a1b2c3")).returncode == 0
                await link.expect_call("Authorize", timeout=10)
                assert (await sim_async(config, "plug", "1")).returncode == 0
                await link.expect_call("TransactionEvent", timeout=10,
                                       where=lambda p: p["eventType"] == "Started")
                answer = await link.call("ChangeAvailability",
                                         {"operationalStatus": "Inoperative"})
                assert answer["status"] == "Scheduled"
                status = json.loads((await sim_async(config, "status")).stdout)
                assert status["evses"]["1"]["state"] == "Occupied"
                assert status["evses"]["1"]["contactor_closed"] is True
                assert (await sim_async(config, "unplug", "1")).returncode == 0
                await link.expect_call("TransactionEvent", timeout=10,
                                       where=lambda p: p["eventType"] == "Ended")
                await link.expect_call("StatusNotification", where=status_of(1, "Unavailable"))
                assert await agent.stop() == 0

                # Restarted: out of service from the first StatusNotification on.
                agent = await AgentProcess(config).start()
                link = await csms.wait_station(STATION, timeout=10, after=link)
                await link.expect_call("StatusNotification", where=status_of(1, "Unavailable"))
                await link.expect_call("StatusNotification", where=status_of(2, "Unavailable"))
                assert [p for p in link.calls("StatusNotification")
                        if p["connectorStatus"] != "Unavailable"] == []
                # The station back in service: EVSE 2 stays out, as the CSMS set it.
                answer = await link.call("ChangeAvailability", {"operationalStatus": "Operative"})
                assert answer == {"status": "Accepted"}
                await link.expect_call("StatusNotification", where=status_of(1, "Available"))
                status = json.loads((await sim_async(config, "status")).stdout)
                assert status["evses"]["2"]["state"] == "Unavailable"
                assert await agent.stop() == 0
            finally:
                await agent.kill()
            assert csms.schema_errors == []
    asyncio.run(asyncio.wait_for(main(), 60))
